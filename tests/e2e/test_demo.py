"""The one-command demo, driven from outside as an operator would.

DATABASE_URL, REDIS_URL, CELERY_BROKER_URL and SOURCES_ENCRYPTION_KEYS point at real servers and a real
key, in the environment and in .env: the demo must use none of them (no table, no key), only its own
Redis, SQLite file and key. It declares two shops and an Odoo database from a YAML file; one shop goes
down while the other keeps syncing. The test checks each milestone with the real `syncworker` commands,
that no credential is ever printed, then sends SIGINT and checks that nothing the demo started survives.
`syncworker run` with nothing configured plays the same demo.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
from cryptography.fernet import Fernet
from store_contents import keys_in, tables_in

from worker.demo.stack import DEMO_PREFIX
from worker.demo.upstreams import CREDENTIALS_DIR, DECLARATIONS_FILE
from worker.infra.settings import Settings

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MILESTONE_TIMEOUT = 120.0
CLAIM_KEY = b"syncworker-test:claim"  # the only key of a database claimed by own_redis_url
SOURCES = {"erp": "odoo", "shop-north": "woocommerce", "shop-south": "woocommerce"}
NORTH, SOUTH = "woocommerce:shop-north", "woocommerce:shop-south"
FAILED = ("failed", "skipped_breaker_open", "redelivery_limit")


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


class Operator:
    """Runs `syncworker` commands against the demo from outside, keeping everything they printed."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.printed: list[str] = []

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "syncworker"), *args], env=self.env, cwd=self.cwd, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        self.printed.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))

    def breakers(self) -> dict[str, str]:
        return {b["name"]: b["state"] for b in self.json("breakers", "list")}


def when(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def stamp(
    events: list[dict[str, Any]], event_type: str, pick: Callable[[Iterable[dt.datetime]], dt.datetime]
) -> dt.datetime:
    """When shop-south's breaker first opened (``min``) or last closed (``max``)."""
    return pick(
        when(e["occurred_at"]) for e in events if (e["event_type"], e["aggregate_id"]) == (event_type, SOUTH)
    )


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


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


def credential_values(demo_dir: Path) -> list[str]:
    """The secrets in the demo's credential files, which must be readable by their owner only."""
    files = sorted((demo_dir / CREDENTIALS_DIR).iterdir())
    assert {f.name.split(".")[0] for f in files} == set(SOURCES)
    assert [f.name for f in files if stat.S_IMODE(f.stat().st_mode) != 0o600] == []
    values = [f.read_text().strip() for f in files]
    assert all(len(v) >= 16 for v in values), "credential files must hold real secrets"
    return values


def test_demo_runs_the_outage_story_and_stops_cleanly(
    tmp_path: Path, scratch_pg_url: str, own_redis_url: str
) -> None:
    operator_key = Fernet.generate_key().decode()
    servers = {
        "DATABASE_URL": scratch_pg_url,
        "REDIS_URL": own_redis_url,
        "CELERY_BROKER_URL": own_redis_url,
        "SOURCES_ENCRYPTION_KEYS": operator_key,
    }
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in servers.items()))
    proc = start(base_env() | servers, tmp_path, "demo")
    transcript = Transcript(proc)
    demo_dir = tmp_path / ".demo"
    try:
        transcript.wait_for("==> sources declared")
        secrets = credential_values(demo_dir)
        declarations = (demo_dir / DECLARATIONS_FILE).read_text()
        assert declarations.count("file:credentials/") == len(secrets)
        assert not [s for s in secrets if s in declarations]

        transcript.wait_for("==> initial syncs succeeded")
        demo_env = dict(line.split("=", 1) for line in (demo_dir / "env").read_text().splitlines() if line)
        assert stat.S_IMODE((demo_dir / "env").stat().st_mode) == 0o600
        assert urlsplit(demo_env["REDIS_URL"]).port != urlsplit(own_redis_url).port, "not its own Redis"
        assert demo_env["CELERY_BROKER_URL"] == demo_env["REDIS_URL"]
        assert demo_env["DATABASE_URL"].startswith("sqlite:///")
        assert demo_env["SOURCES_ENCRYPTION_KEYS"] != operator_key
        Fernet(demo_env["SOURCES_ENCRYPTION_KEYS"])
        assert not [k for k in demo_env if k.startswith(("WOOCOMMERCE_", "ODOO_"))]
        ops = Operator(base_env() | demo_env, tmp_path)
        assert {s["name"]: s["kind"] for s in ops.json("sources", "list")} == SOURCES
        ops.run("sources", "show", "shop-south")
        # The demo goes on meanwhile: shop-south may already be down, but nothing else is.
        states = ops.breakers()
        assert states[NORTH] == states["odoo:erp"] == "closed"

        transcript.wait_for("==> breaker woocommerce:shop-south is OPEN")
        # Only shop-south's breaker: its open period lasts well past the demo's next steps.
        states = ops.breakers()
        assert states[SOUTH] == "open"
        assert states[NORTH] == states["odoo:erp"] == "closed"
        transcript.wait_for("==> shop-north keeps syncing while shop-south is skipped")
        assert ops.breakers()[NORTH] == "closed"

        transcript.wait_for("==> demo scenario complete")
        assert set(ops.breakers().values()) == {"closed"}
        events = ops.json("events", "--limit", "5000")
        breaker_events = [
            (e["event_type"], e["aggregate_id"]) for e in events if e["event_type"].startswith("breaker.")
        ]
        assert ("breaker.opened", SOUTH) in breaker_events
        assert ("breaker.closed", SOUTH) in breaker_events
        assert {name for _, name in breaker_events} == {SOUTH}, "no other source's breaker moved"
        skips = [e for e in events if e["event_type"] == "sync.skipped_breaker_open"]
        assert any(
            e["aggregate_id"] == "shop-south" and (e["payload"] or {}).get("by") == "beat" for e in skips
        )
        assert {e["aggregate_id"] for e in skips} == {"shop-south"}

        opened, closed = stamp(events, "breaker.opened", min), stamp(events, "breaker.closed", max)
        runs = ops.json("runs", "--limit", "1000")
        assert {r["source"] for r in runs} == set(SOURCES)
        statuses = {(r["source"], r["status"]) for r in runs}
        assert {("erp", "succeeded"), ("shop-north", "succeeded"), ("shop-south", "succeeded")} <= statuses
        assert {("shop-south", "failed"), ("shop-south", "skipped_breaker_open")} <= statuses
        assert not [r for r in runs if r["source"] != "shop-south" and r["status"] in FAILED]
        during = [r for r in runs if r["source"] == "shop-north" and opened < when(r["started_at"]) < closed]
        assert "succeeded" in {r["status"] for r in during}, (
            "shop-north kept syncing while shop-south was down"
        )
        assert next(r["status"] for r in runs if r["source"] == "shop-south") == "succeeded"

        flower = re.search(
            r"Flower\s+(\S+)\s+\(user (\S+), password (\S+)\)", transcript.wait_for(", password ")
        )
        assert flower is not None
        url, user, password = flower.groups()
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, timeout=5, auth=(user, password)).status_code == 200

        pids = {
            name: int(pid)
            for name, pid in (line.split() for line in (demo_dir / "pids").read_text().splitlines())
        }
        assert set(pids) == {"redis", "demo1", "demo2", "beat", "flower"}
        assert all(alive(pid) for pid in pids.values())

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, transcript.text()
        transcript.wait_for("==> demo stopped", timeout=5)
        printed = "\n".join([*transcript.lines, *ops.printed])
        assert [s for s in secrets if s in printed] == [], "a credential reached the output"
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
