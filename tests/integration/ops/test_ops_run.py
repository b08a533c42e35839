"""`syncworker run` with an upstream configured: migrate, worker and beat as children, warm stop on SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ops_env import BIN, alive, children_of, clean_env, direct_children, wait_until

from worker.cli import main
from worker.cli.output import CliState
from worker.sandbox import WooCommerceSimulator

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
        assert len(descendants) >= 3  # worker main, its pool, beat
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
        assert len(direct) == 2
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
