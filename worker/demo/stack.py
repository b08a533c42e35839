"""The demo's moving parts: simulators in this process, Redis, two worker nodes, beat and Flower.

Two separate ``celery worker`` nodes run so that a breaker visibly opens for the whole fleet, not
per process. Every child gets the same environment, written to ``<demo dir>/env`` so an operator can
point `syncworker` commands at the demo from another terminal. None of the operator's settings reach
it: the demo's Redis, database, upstreams and the key sealing their credentials are its own, and its
sources come from the ``sources`` table only (see ``upstreams``), as in a fleet deployment.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from worker.cli.supervisor import Supervisor
from worker.demo.services import demo_database_url, free_port, start_private_redis
from worker.demo.upstreams import DemoUpstreams, demo_key, write_private
from worker.infra.settings import Settings, load_settings

DEMO_PREFIX = "syncworker-demo"
NODES = ("demo1", "demo2")
READY_TIMEOUT = 60.0
CLI_TIMEOUT = 60.0

# Short retry periods so the outage and the recovery both happen within a minute (the breakers'
# periods are declared with the sources); beat picks up the declared sources within seconds.
TUNING = {
    "RETRY_MAX_ATTEMPTS": "3",
    "RETRY_INITIAL_BACKOFF_SECONDS": "0.2",
    "RETRY_MAX_BACKOFF_SECONDS": "1",
    "RETRY_MAX_DELAY_SECONDS": "10",
    "HTTP_CONNECT_TIMEOUT": "2",
    "HTTP_READ_TIMEOUT": "10",
    "SYNC_INCREMENTAL_INTERVAL_SECONDS": "60",
    "BEAT_SOURCES_REFRESH_SECONDS": "5",
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
    upstreams: DemoUpstreams = field(default_factory=DemoUpstreams)
    flower_url: str = ""
    flower_auth: tuple[str, str] = ("demo", "")
    metrics_url: str = ""
    redis_url: str = ""
    database_url: str = ""

    def start_services(self, base_env: Mapping[str, str]) -> None:
        """A private Redis, the SQLite database and the simulators; fills ``env`` for the workers."""
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
            # Demo-only: it seals the simulators' throwaway credentials in the demo's own database.
            "SOURCES_ENCRYPTION_KEYS": demo_key(self.workdir),
        }
        self.upstreams.start()
        self.env = env

    def settings(self) -> Settings:
        return settings_from_env(self.env)

    def migrate(self) -> None:
        from worker.infra.db import upgrade_database

        upgrade_database(self.database_url)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a real `syncworker` command against the demo, as an operator would from a shell."""
        argv = [sys.executable, "-c", "from worker.cli import main; main()", *args]
        return subprocess.run(
            argv,
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def start_processes(self) -> None:
        """Two worker nodes (the first exports metrics), beat and Flower, on a migrated database."""
        celery = [sys.executable, "-m", "celery", "-A", "worker"]
        metrics_port = free_port()
        for index, node in enumerate(NODES):
            env = dict(self.env)
            if index == 0:
                multiproc = self.workdir / f"metrics-{node}"
                env |= {"METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
                multiproc.mkdir(parents=True, exist_ok=True)
                self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            argv = [
                *celery,
                "worker",
                "-Q",
                "sync-incremental,sync-full",
                "-c",
                "2",
                "-n",
                f"{node}@%h",
                "-l",
                "info",
            ]
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
        # For pointing the CLI at the demo; the key is the demo's own, sealing throwaway credentials.
        keep = (
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "DATABASE_URL",
            "REDIS_KEY_PREFIX",
            "EVENT_SPOOL_PATH",
            "SOURCES_ENCRYPTION_KEYS",
        )
        lines = [f"{k}={self.env[k]}" for k in keep]
        write_private(self.workdir / "env", "\n".join(lines) + "\n")

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
        self.upstreams.stop()
