"""Real `celery worker` / `celery beat` subprocesses against private Redis and PostgreSQL databases.

Each process runs in its own session so a finalizer can kill the whole group, but the tests signal only
the main pid, as an orchestrator with exec-form commands does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, text

from worker.celeryapp.config import SYNC_TASK, queue_for
from worker.infra.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CLAIM_KEY = "syncworker-test:claim"
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Timings small enough for a quick suite, and consistent with the settings' own checks:
# time limit < visibility timeout, every countdown below it, a lock a dead run leaves soon expires.
FAST_ENV = {
    "CELERY_VISIBILITY_TIMEOUT": "20",
    "CELERY_TASK_TIME_LIMIT": "18",
    "CELERY_TASK_SOFT_TIME_LIMIT": "16",
    "RETRY_MAX_ATTEMPTS": "2",
    "RETRY_INITIAL_BACKOFF_SECONDS": "0.05",
    "RETRY_MAX_BACKOFF_SECONDS": "0.1",
    "RETRY_MAX_DELAY_SECONDS": "2",
    "RETRY_AFTER_CAP_SECONDS": "1",
    "BUDGET_MAX_WAIT_SECONDS": "3",
    "HTTP_READ_TIMEOUT": "5",
    "SYNC_LOCK_TTL_SECONDS": "6",
    "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "5",
    "SYNC_OVERLAP_SECONDS": "5",
    "WOOCOMMERCE_BREAKER__OPEN_SECONDS": "10",
    "WOOCOMMERCE_BREAKER__OPEN_MAX_SECONDS": "15",
    "ODOO_BREAKER__OPEN_SECONDS": "10",
    "ODOO_BREAKER__OPEN_MAX_SECONDS": "15",
    "LOG_FORMAT": "console",
    "LOG_LEVEL": "INFO",
}


def claim_redis_db(base_url: str, owner: str) -> str:
    """An empty Redis database of our own (1-15), claimed with the same key the shared fixtures use."""
    base, _, _ = base_url.rpartition("/")
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{base}/{db}")
        try:
            if client.set(CLAIM_KEY, owner, nx=True, ex=3600):
                if client.dbsize() == 1:
                    return f"{base}/{db}"
                client.delete(CLAIM_KEY)
        finally:
            client.close()
    msg = "no free Redis database (1-15) for an end-to-end test"
    raise RuntimeError(msg)


def release_redis_db(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def clean_environment() -> dict[str, str]:
    """The parent's environment without any variable syncworker reads."""
    names = {name.upper() for name in Settings.model_fields}
    return {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in names and not k.upper().startswith(("ODOO_", "WOOCOMMERCE_", "CELERY_", "SYNC_"))
    }


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; the timeout is a safety net, not a claim."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"timed out waiting for {what}"
            raise AssertionError(msg)
        time.sleep(interval)


class CeleryProcess:
    """One `celery -A worker <args>` subprocess with its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *args],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None and needle not in self.log():
                msg = f"celery exited with {self.proc.returncode} before {needle!r}:\n{self.log()[-4000:]}"
                raise AssertionError(msg)
            return needle in self.log()

        wait_until(seen, timeout=timeout, what=f"{needle!r} in {self.log_path.name}")

    def signal(self, sig: signal.Signals) -> None:
        """Signal the main pid only: a signal to the whole group would kill the pool children at once."""
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def destroy(self) -> None:
        """Kill the process group (main pid and pool children), whatever state it is in."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()


class Stack:
    """Starts worker and beat processes for one test and always cleans them up."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.processes: list[CeleryProcess] = []

    def worker(
        self,
        *,
        concurrency: int = 1,
        queues: str = "sync-incremental,sync-full",
        name: str | None = None,
        wait_ready: bool = True,
    ) -> CeleryProcess:
        name = name or f"e2e-{uuid.uuid4().hex[:8]}"
        args = [
            "worker", "-P", "prefork", "-c", str(concurrency), "-Q", queues, "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        log_path = self.tmp_path / f"{name}-{len(self.processes)}.log"
        proc = CeleryProcess(args, self.env, log_path)
        self.processes.append(proc)
        if wait_ready:
            proc.wait_for_log("ready.")
        return proc

    def beat(self) -> CeleryProcess:
        name = f"beat-{uuid.uuid4().hex[:8]}"
        proc = CeleryProcess(["beat", "-l", "INFO"], self.env, self.tmp_path / f"{name}.log")
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.destroy()


def enqueue(app: Any, source: str, *, full: bool) -> Any:
    """Send the task by name, as beat does: only the source's name and ``full`` travel in the message."""
    return app.send_task(SYNC_TASK, kwargs={"source": source, "full": full}, queue=queue_for(full))


# The states a sync task ends in (tasks/__init__.py); custom ones are not "ready" to Celery.
FINAL_STATES = {"SUCCESS", "FAILURE", "PARTIAL", "SKIPPED", "DEFERRED", "INTERRUPTED"}


def outcome(result: Any, timeout: float) -> tuple[str, Any]:
    """Wait for a task's final state; returns it with the stored result (summary or exception)."""

    def done() -> tuple[str, Any] | None:
        state = result.state
        return (state, result.result) if state in FINAL_STATES else None

    found: tuple[str, Any] = wait_until(done, timeout=timeout, interval=0.3, what=f"task {result.id} to end")
    return found


# -- the mirror ---------------------------------------------------------------------------------


def money(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def expected_products(catalog: Any) -> dict[int, dict[str, Any]]:
    """What a perfect mirror holds, keyed by WooCommerce id (products, trashed ones, variations)."""
    return {int(row["id"]): row for row in catalog.expected_rows()}


def mirrored_products(engine: Engine, source: str = "woocommerce-products") -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        query = text("SELECT * FROM products WHERE deleted_at IS NULL AND source = :source")
        rows = conn.execute(query, {"source": source}).mappings()
        return {int(row["woo_id"]): dict(row) for row in rows}


def product_mismatches(expected: dict[int, dict[str, Any]], mirrored: dict[int, dict[str, Any]]) -> list[str]:
    """Every difference between upstream and the mirror, field by field (empty when they agree)."""
    problems = [f"missing {i}" for i in sorted(expected.keys() - mirrored.keys())]
    problems += [f"unexpected {i}" for i in sorted(mirrored.keys() - expected.keys())]
    for woo_id in sorted(expected.keys() & mirrored.keys()):
        up, row = expected[woo_id], mirrored[woo_id]
        fields = {
            # related_ids are drawn anew on every read upstream: no mirror can equal them.
            "raw": (
                {k: v for k, v in up.items() if k != "related_ids"},
                {k: v for k, v in row["raw"].items() if k != "related_ids"},
            ),
            "status": (up["status"], row["status"]),
            "name": (up.get("name") or "", row["name"]),
            "sku": (up.get("sku") or None, row["sku"]),
            "price": (money(up.get("price")), row["price"]),
            "regular_price": (money(up.get("regular_price")), row["regular_price"]),
            "sale_price": (money(up.get("sale_price")), row["sale_price"]),
            "stock_quantity": (up.get("stock_quantity"), row["stock_quantity"]),
            "stock_status": (up.get("stock_status") or None, row["stock_status"]),
            "type": (up.get("type", "variation"), row["type"]),
            "date_modified_gmt": (
                up.get("date_modified_gmt"),
                row["date_modified_gmt"].strftime("%Y-%m-%dT%H:%M:%S") if row["date_modified_gmt"] else None,
            ),
        }
        if "parent_id" in up and up.get("type") is None:
            fields["parent_woo_id"] = (up["parent_id"], row["parent_woo_id"])
        problems += [f"{woo_id}.{name}: {a!r} != {b!r}" for name, (a, b) in fields.items() if a != b]
    return problems


def _odoo(value: Any) -> Any:
    """Odoo sends ``false`` for an empty field."""
    return None if value is False or value == "" else value


def expected_suppliers(catalog: Any) -> dict[int, dict[str, Any]]:
    return {int(p["id"]): p for p in catalog.suppliers()}


def mirrored_suppliers(engine: Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM suppliers WHERE deleted_at IS NULL")).mappings()
        return {int(row["odoo_id"]): dict(row) for row in rows}


def supplier_mismatches(
    expected: dict[int, dict[str, Any]], mirrored: dict[int, dict[str, Any]]
) -> list[str]:
    problems = [f"missing {i}" for i in sorted(expected.keys() - mirrored.keys())]
    problems += [f"unexpected {i}" for i in sorted(mirrored.keys() - expected.keys())]
    text_fields = ("name", "email", "phone", "vat", "ref", "website", "street", "street2", "city", "zip")
    for odoo_id in sorted(expected.keys() & mirrored.keys()):
        up, row = expected[odoo_id], mirrored[odoo_id]
        fields = {name: (_odoo(up[name]), row[name]) for name in text_fields}
        fields |= {
            "is_company": (up["is_company"], row["is_company"]),
            "active": (up["active"], row["active"]),
            "country_code": (_odoo(up["country_code"]), row["country_code"]),
            "supplier_rank": (up["supplier_rank"], row["supplier_rank"]),
            "parent_odoo_id": (up["parent_id"][0] if up["parent_id"] else None, row["parent_odoo_id"]),
            "state_name": (up["state_id"][1] if up["state_id"] else None, row["state_name"]),
            "odoo_write_date": (
                up["write_date"],
                row["odoo_write_date"].strftime("%Y-%m-%d %H:%M:%S") if row["odoo_write_date"] else None,
            ),
        }
        problems += [f"{odoo_id}.{name}: {a!r} != {b!r}" for name, (a, b) in fields.items() if a != b]
    return problems


def runs(engine: Engine, source: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(
            text("SELECT * FROM sync_runs WHERE source = :s ORDER BY id"), {"s": source}
        ).mappings()
        return [dict(r) for r in result]


def events(engine: Engine, prefix: str = "") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(
            text("SELECT * FROM event_log WHERE event_type LIKE :p ORDER BY id"), {"p": prefix + "%"}
        ).mappings()
        return [dict(r) for r in result]
