"""The one-command demo, driven from outside as an operator would.

DATABASE_URL, REDIS_URL and CELERY_BROKER_URL point at real servers, in the environment and in .env:
the demo must use none of them (no table, no key), only its own Redis and SQLite file. The test watches
the narrative, checks each milestone with the real `syncworker` commands, then sends SIGINT and checks
that nothing the demo started survives. `syncworker run` with nothing configured plays the same demo.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
from store_contents import keys_in, tables_in

from worker.demo.stack import DEMO_PREFIX
from worker.infra.settings import Settings

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MILESTONE_TIMEOUT = 120.0
CLAIM_KEY = b"syncworker-test:claim"  # the only key of a database claimed by own_redis_url


def demo_keys_on_server(redis_url: str) -> list[bytes]:
    """Keys under the demo's prefix in any database of the server at ``redis_url``."""
    found: list[bytes] = []
    server = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        databases = [int(name.removeprefix("db")) for name in server.info("keyspace")]
    finally:
        server.close()
    for db in databases:
        # The URL's own database number wins over a db= argument, so it is replaced.
        url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{db}"))
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            found += client.scan_iter(match=f"{DEMO_PREFIX}*", count=1000)
        finally:
            client.close()
    return found


def base_env() -> dict[str, str]:
    """This environment without any syncworker, Celery, Flower or Prometheus setting."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.split("__")[0].upper() not in fields and not k.startswith(("FLOWER_", "PROMETHEUS_", "CELERY_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class Transcript:
    """Collects the demo's output in a thread so milestones can be awaited."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, needle: str, timeout: float = MILESTONE_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if "demo failed" in "\n".join(self.lines) or not self._thread.is_alive():
                    raise AssertionError(f"demo ended before {needle!r}:\n{self.text()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {needle!r} after {timeout:g}s:\n{self.text()}")
                self._changed.wait(min(left, 1.0))

    def join(self) -> None:
        self._thread.join(timeout=10)

    def text(self) -> str:
        return "\n".join(self.lines[-80:])


def cli(env: dict[str, str], cwd: Path, *args: str) -> Any:
    done = subprocess.run(
        [str(BIN / "syncworker"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def breaker_state(env: dict[str, str], cwd: Path, name: str) -> str:
    return next(b["state"] for b in cli(env, cwd, "breakers", "list", "--json") if b["name"] == name)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line or environment names ``marker`` (the demo's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker.encode() in blob and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def start(env: dict[str, str], cwd: Path, command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "syncworker"), command],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_demo_runs_the_outage_story_and_stops_cleanly(
    tmp_path: Path, scratch_pg_url: str, own_redis_url: str
) -> None:
    servers = {"DATABASE_URL": scratch_pg_url, "REDIS_URL": own_redis_url, "CELERY_BROKER_URL": own_redis_url}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in servers.items()))
    proc = start(base_env() | servers, tmp_path, "demo")
    transcript = Transcript(proc)
    try:
        transcript.wait_for("==> initial syncs succeeded")
        transcript.wait_for("==> breaker woocommerce is OPEN")
        demo_env = dict(
            line.split("=", 1) for line in (tmp_path / ".demo" / "env").read_text().splitlines() if line
        )
        assert urlsplit(demo_env["REDIS_URL"]).port != urlsplit(own_redis_url).port, "not its own Redis"
        assert demo_env["CELERY_BROKER_URL"] == demo_env["REDIS_URL"]
        assert demo_env["DATABASE_URL"].startswith("sqlite:///")
        ops_env = base_env() | demo_env
        # The breaker stays open until the demo's recovery step, seconds later.
        assert breaker_state(ops_env, tmp_path, "woocommerce") == "open"

        transcript.wait_for("==> demo scenario complete")
        assert breaker_state(ops_env, tmp_path, "woocommerce") == "closed"
        types = {e["event_type"] for e in cli(ops_env, tmp_path, "events", "--json", "--limit", "1000")}
        assert "breaker.opened" in types
        assert any("failed" in t for t in types), types
        runs = cli(ops_env, tmp_path, "runs", "--json", "--limit", "100")
        statuses = {(r["source"], r["status"]) for r in runs}
        assert ("odoo-suppliers", "succeeded") in statuses
        assert ("woocommerce-products", "skipped_breaker_open") in statuses
        assert runs[0]["source"] == "woocommerce-products"
        assert runs[0]["status"] == "succeeded"

        flower = re.search(
            r"Flower\s+(\S+)\s+\(user (\S+), password (\S+)\)", transcript.wait_for(", password ")
        )
        assert flower is not None
        url, user, password = flower.groups()
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, timeout=5, auth=(user, password)).status_code == 200

        pids = {
            name: int(pid)
            for name, pid in (line.split() for line in (tmp_path / ".demo" / "pids").read_text().splitlines())
        }
        assert set(pids) == {"redis", "demo1", "demo2", "beat", "flower"}
        assert all(alive(pid) for pid in pids.values())

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, transcript.text()
        transcript.wait_for("==> demo stopped", timeout=5)
        assert [name for name, pid in pids.items() if alive(pid)] == []
        assert processes_mentioning(str(tmp_path)) == []
        assert tables_in(scratch_pg_url) == []
        assert keys_in(own_redis_url) == {CLAIM_KEY}
        assert demo_keys_on_server(own_redis_url) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in processes_mentioning(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
        transcript.join()
        if proc.stdout is not None:
            proc.stdout.close()


def test_run_with_nothing_configured_plays_the_demo_and_says_so(tmp_path: Path) -> None:
    proc = start(base_env(), tmp_path, "run")
    transcript = Transcript(proc)
    try:
        transcript.wait_for("this is the DEMO", timeout=30)
        transcript.wait_for("Redis at redis://127.0.0.1:", timeout=60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, transcript.text()
        transcript.wait_for("==> demo stopped", timeout=5)
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in processes_mentioning(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
        transcript.join()
        if proc.stdout is not None:
            proc.stdout.close()
