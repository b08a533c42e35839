"""The one-command demo, driven from outside as an operator would.

Redis at REDIS_URL is "stopped" (a closed port), so the demo must start its own; DATABASE_URL is
unset, so it uses its SQLite file. The test watches the narrative, checks each milestone with the
real `syncworker` commands, then sends SIGINT and checks that nothing the demo started survives.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from worker.settings import Settings

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MILESTONE_TIMEOUT = 120.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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


def test_demo_runs_the_outage_story_and_stops_cleanly(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{closed_port()}/0"
    env = base_env() | {"REDIS_URL": dead_redis}
    proc = subprocess.Popen(
        [str(BIN / "syncworker"), "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    transcript = Transcript(proc)
    try:
        transcript.wait_for("==> initial syncs succeeded")
        transcript.wait_for("==> breaker woocommerce is OPEN")
        demo_env = dict(
            line.split("=", 1) for line in (tmp_path / ".demo" / "env").read_text().splitlines() if line
        )
        assert demo_env["REDIS_URL"] != dead_redis, "the demo should have started its own Redis"
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
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in processes_mentioning(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
        transcript.join()
        if proc.stdout is not None:
            proc.stdout.close()
