"""`syncworker run` with sources configured: migrate, workers and beat as children, warm stop on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from ops_env import BIN, alive, children_of, clean_env, direct_children, wait_until
from sqlalchemy import text

from worker.cli import main
from worker.cli.output import CliState
from worker.infra.db import make_engine
from worker.sandbox import OdooSimulator, WooCommerceSimulator

# Real celery worker and beat processes (about 25 s each).
pytestmark = pytest.mark.e2e


@pytest.fixture
def run_env(tmp_path: Any, redis_url: str, key_prefix: str) -> Iterator[dict[str, str]]:
    with WooCommerceSimulator(seed=3, size=20) as woo:
        yield clean_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}",
            REDIS_URL=redis_url,
            REDIS_KEY_PREFIX=key_prefix,
            EVENT_SPOOL_PATH=str(tmp_path / "events.spool"),
            WOOCOMMERCE_URL=woo.base_url,
            WOOCOMMERCE_CONSUMER_KEY=woo.consumer_key,
            WOOCOMMERCE_CONSUMER_SECRET=woo.consumer_secret,
            LOG_FORMAT="console",
        )


def start(env: dict[str, str], cwd: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "syncworker"), "run"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_healthy(settings_factory: Any, env: dict[str, str], proc: subprocess.Popen[str]) -> None:
    settings = settings_factory(database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"])

    def healthy() -> bool:
        assert proc.poll() is None, proc.communicate()[0]
        checks = ["health", "--check", "database", "--check", "workers"]
        return CliRunner().invoke(main, checks, obj=CliState(settings=settings)).exit_code == 0

    wait_until(healthy, 90, "a migrated database and a live worker")


def test_sigint_stops_worker_and_beat_warm(
    settings_factory: Any, run_env: dict[str, str], tmp_path: Any
) -> None:
    proc = start(run_env, tmp_path)
    try:
        wait_healthy(settings_factory, run_env, proc)
        descendants = children_of(proc.pid)
        assert len(descendants) >= 5  # two workers' main processes and pools, beat
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out
        assert "Warm shutdown" in out or "warm shutdown" in out.lower(), out
        assert [pid for pid in descendants if alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_dying_child_stops_the_rest_and_fails(
    settings_factory: Any, run_env: dict[str, str], tmp_path: Any
) -> None:
    proc = start(run_env, tmp_path)
    try:
        wait_healthy(settings_factory, run_env, proc)
        direct = direct_children(proc.pid)
        assert len(direct) == 3  # the incremental worker, the full worker, beat
        beat = next(
            pid for pid in direct if b"beat" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        )
        os.kill(beat, signal.SIGKILL)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode != 0, out
        assert [pid for pid in direct if alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_several_sources_in_the_table_are_all_run(settings_factory: Any, redis_url: str, key_prefix: str,
                                                   tmp_path: Any) -> None:  # fmt: skip
    """No upstream variable at all: the sources added with the CLI are what `run` runs, every one."""
    with (
        WooCommerceSimulator(seed=5, size=15) as north,
        WooCommerceSimulator(seed=6, size=15) as south,
        OdooSimulator(seed=7, size=15, db="erp") as erp,
    ):
        env = clean_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}", REDIS_URL=redis_url, REDIS_KEY_PREFIX=key_prefix,
            EVENT_SPOOL_PATH=str(tmp_path / "events.spool"), LOG_FORMAT="console",
            SOURCES_ENCRYPTION_KEYS=Fernet.generate_key().decode(), SYNC_INCREMENTAL_INTERVAL_SECONDS="3",
            NORTH_KEY=north.consumer_key, NORTH_SECRET=north.consumer_secret,
            SOUTH_KEY=south.consumer_key, SOUTH_SECRET=south.consumer_secret, ERP_KEY=erp.api_key,
        )  # fmt: skip
        cli = [str(BIN / "syncworker")]
        subprocess.run([*cli, "db", "upgrade"], env=env, cwd=tmp_path, check=True, capture_output=True)
        for name, sim, var in (("north", north, "NORTH"), ("south", south, "SOUTH")):
            subprocess.run([*cli, "sources", "add", name, "--kind", "woocommerce", "--url", sim.base_url,
                            "--credential", f"consumer_key=env:{var}_KEY",
                            "--credential", f"consumer_secret=env:{var}_SECRET"],
                           env=env, cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
        odoo = ["--option", f"db={erp.db}", "--option", f"username={erp.login}",
                "--credential", "api_key=env:ERP_KEY"]  # fmt: skip
        subprocess.run([*cli, "sources", "add", "erp", "--kind", "odoo", "--url", erp.base_url, *odoo],
                       env=env, cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
        proc = start(env, tmp_path)
        engine = make_engine(env["DATABASE_URL"])
        try:

            def every_source_synced() -> bool:
                assert proc.poll() is None, proc.communicate()[0]
                with engine.connect() as conn:
                    query = text("SELECT DISTINCT source FROM sync_runs WHERE status = 'succeeded'")
                    return {r[0] for r in conn.execute(query)} == {"north", "south", "erp"}

            wait_until(every_source_synced, 120, "a succeeded run of every stored source")
            with engine.connect() as conn:
                counts = dict(
                    conn.execute(text("SELECT source, count(*) FROM products GROUP BY source")).all()
                )
            assert counts["north"] > 0 and counts["south"] > 0
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, out
        finally:
            engine.dispose()
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
