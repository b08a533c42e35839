"""The demo's moving parts: simulators in this process, Redis, two worker nodes, beat and Flower.

Two separate ``celery worker`` nodes run so that the breaker visibly opens for the whole fleet, not
per process. Every child gets the same environment, written to ``<demo dir>/env`` so an operator can
point `syncworker` commands at the demo from another terminal. None of the operator's settings reach
it: the demo's Redis, database and upstreams are its own.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from worker.demo.processes import Supervisor
from worker.demo.services import demo_database_url, free_port, start_private_redis
from worker.infra.settings import Settings, load_settings

DEMO_PREFIX = "syncworker-demo"
WOO_SIZE = 120
ODOO_SIZE = 150
NODES = ("demo1", "demo2")
READY_TIMEOUT = 60.0

# Short breaker and retry periods so the outage and the recovery both happen within a minute.
TUNING = {
    "WOOCOMMERCE_BREAKER__FAILURE_THRESHOLD": "3",
    "WOOCOMMERCE_BREAKER__OPEN_SECONDS": "5",
    "WOOCOMMERCE_BREAKER__OPEN_MAX_SECONDS": "20",
    "WOOCOMMERCE_BREAKER__SUCCESS_THRESHOLD": "1",
    "ODOO_BREAKER__OPEN_SECONDS": "5",
    "RETRY_MAX_ATTEMPTS": "3",
    "RETRY_INITIAL_BACKOFF_SECONDS": "0.2",
    "RETRY_MAX_BACKOFF_SECONDS": "1",
    "RETRY_MAX_DELAY_SECONDS": "10",
    "HTTP_CONNECT_TIMEOUT": "2",
    "HTTP_READ_TIMEOUT": "10",
    "SYNC_INCREMENTAL_INTERVAL_SECONDS": "60",
    "LOG_FORMAT": "console",
    "PYTHONUNBUFFERED": "1",
}
# Read by Celery, Flower and prometheus-client themselves, or naming an upstream: Celery, for one, takes
# CELERY_BROKER_URL (and CELERY_BROKER_READ_URL, CELERY_RESULT_BACKEND, ...) over the app's own config.
FOREIGN_PREFIXES = ("CELERY_", "FLOWER_", "PROMETHEUS_", "ODOO_", "WOOCOMMERCE_")


def is_operator_setting(name: str) -> bool:
    """Whether ``name`` configures syncworker or a library it runs, so it must stay out of the demo.

    Settings are case-insensitive and nest with ``__``; the children also run in the demo directory, so
    an operator's .env (read from the working directory) stays out as well.
    """
    upper = name.upper()
    return upper.split("__")[0] in {f.upper() for f in Settings.model_fields} or upper.startswith(
        FOREIGN_PREFIXES
    )


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings for exactly the variables the children get (``A__B`` nests, as pydantic-settings does)."""
    fields = set(Settings.model_fields)
    values: dict[str, Any] = {}
    for key, value in env.items():
        name, _, sub = key.lower().partition("__")
        if name not in fields:
            continue
        if sub:
            values.setdefault(name, {})[sub] = value
        else:
            values[name] = value
    return load_settings(_env_file=None, **values)


@dataclass
class DemoStack:
    workdir: Path
    supervisor: Supervisor = field(default_factory=Supervisor)
    env: dict[str, str] = field(default_factory=dict)
    simulators: list[Any] = field(default_factory=list)
    flower_url: str = ""
    flower_auth: tuple[str, str] = ("demo", "")
    metrics_url: str = ""
    redis_url: str = ""
    database_url: str = ""

    def start_services(self, base_env: Mapping[str, str]) -> None:
        """A private Redis, the SQLite database and both simulators; fills ``env`` for the workers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in base_env.items() if not is_operator_setting(k)}
        self.redis_url = start_private_redis(self.supervisor, self.workdir, env)
        self.database_url = demo_database_url(self.workdir)
        user, password = "demo", secrets.token_urlsafe(12)
        self.flower_auth = (user, password)
        env |= TUNING | {
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "METRICS_PORT": "0",
            "DATABASE_URL": self.database_url,
            "REDIS_KEY_PREFIX": DEMO_PREFIX,
            "EVENT_SPOOL_PATH": str(self.workdir / "events.spool"),
            "FLOWER_BASIC_AUTH": f"{user}:{password}",
            "FLOWER_PORT": str(free_port()),
        }
        env |= self._start_simulators()
        self.env = env

    def _start_simulators(self) -> dict[str, str]:
        from worker.sandbox import OdooSimulator, WooCommerceSimulator

        woo = WooCommerceSimulator(seed=7, size=WOO_SIZE).start()
        odoo = OdooSimulator(seed=7, size=ODOO_SIZE).start()
        self.simulators = [woo, odoo]
        return {
            "WOOCOMMERCE_URL": woo.base_url,
            "WOOCOMMERCE_CONSUMER_KEY": woo.consumer_key,
            "WOOCOMMERCE_CONSUMER_SECRET": woo.consumer_secret,
            "ODOO_URL": odoo.base_url,
            "ODOO_DB": odoo.db,
            "ODOO_USERNAME": odoo.login,
            "ODOO_API_KEY": odoo.api_key,
        }

    @property
    def woo(self) -> Any:
        return self.simulators[0]

    def settings(self) -> Settings:
        return settings_from_env(self.env)

    def start_processes(self) -> None:
        """Migrate, then two worker nodes (the first exports metrics), beat and Flower."""
        from worker.infra.db import upgrade_database

        upgrade_database(self.database_url)
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        metrics_port = free_port()
        for index, node in enumerate(NODES):
            env = dict(self.env)
            if index == 0:
                multiproc = self.workdir / f"metrics-{node}"
                env |= {"METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
                multiproc.mkdir(parents=True, exist_ok=True)
                self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            argv = [*celery, "worker", "-Q", "odoo,woocommerce", "-c", "2", "-n", f"{node}@%h", "-l", "info"]
            self.supervisor.start(
                node, argv, env=env, log_path=self.workdir / f"{node}.log", cwd=self.workdir
            )
        beat_argv = [*celery, "beat", "-l", "info"]
        self.supervisor.start(
            "beat", beat_argv, env=self.env, log_path=self.workdir / "beat.log", cwd=self.workdir
        )
        port = self.env["FLOWER_PORT"]
        flower_argv = [*celery, "flower", "--address=127.0.0.1", f"--port={port}"]
        flower_log = self.workdir / "flower.log"
        self.supervisor.start("flower", flower_argv, env=self.env, log_path=flower_log, cwd=self.workdir)
        self.flower_url = f"http://127.0.0.1:{port}/"
        self.supervisor.write_pidfile(self.workdir / "pids")
        self.write_env_file()

    def write_env_file(self) -> None:
        # Secrets of the simulators are throwaway; the file is for pointing the CLI at the demo.
        keep = ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL", "REDIS_KEY_PREFIX", "EVENT_SPOOL_PATH")
        lines = [f"{k}={self.env[k]}" for k in keep]
        lines += [f"{k}={v}" for k, v in TUNING.items() if "BREAKER" in k]
        path = self.workdir / "env"
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, 0o600)

    def wait_ready(self, app: Any) -> None:
        """Both worker nodes answer a ping and Flower answers (with 401: it demands credentials)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            dead = self.supervisor.first_exit()
            if dead is not None:
                msg = f"{dead.name} exited with status {dead.process.returncode} (see {dead.log_path})"
                raise RuntimeError(msg)
            replies = app.control.inspect(timeout=1.0).ping() or {}
            if len(replies) >= len(NODES) and self._flower_up():
                return
            if time.monotonic() > deadline:
                msg = f"workers or Flower not ready after {READY_TIMEOUT:g}s (logs in {self.workdir})"
                raise RuntimeError(msg)
            time.sleep(0.5)

    def metrics_up(self) -> bool:
        try:
            return requests.get(self.metrics_url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _flower_up(self) -> bool:
        try:
            return requests.get(self.flower_url, timeout=2, auth=self.flower_auth).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Workers warm (SIGTERM to each main pid), then Flower, beat and Redis; simulators last."""
        self.supervisor.stop_all(timeout)
        for sim in self.simulators:
            sim.stop()
