"""Crash paths on real processes: shutdown escalation before a SIGKILL, and the redelivery cap."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest
import redis
from celery import Celery
from e2e_harness import (
    CeleryProcess,
    Stack,
    enqueue,
    events,
    expected_products,
    mirrored_products,
    outcome,
    product_mismatches,
    runs,
    wait_until,
)
from sqlalchemy import Engine

from worker.infra.settings import Settings
from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"


def crash(proc: CeleryProcess) -> None:
    """SIGKILL the main pid, then whatever of its group survived, as when the host dies."""
    proc.signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def started_runs(db: Engine) -> list[dict[str, object]]:
    return [r for r in runs(db, WOO) if r["status"] != "deferred"]


def wait_for_runs(db: Engine, count: int) -> None:
    wait_until(
        lambda: len(rows := started_runs(db)) == count and rows[-1]["status"] == "running",
        timeout=90,
        what=f"run number {count} to start",
    )


def test_escalation_restores_the_message_when_a_page_hangs(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_settings: Settings
) -> None:
    # A page stuck on a hung upstream would keep a warm shutdown waiting past an orchestrator's grace
    # period; the worker escalates itself to a cold shutdown first, so the message is restored now
    # instead of being stranded until the visibility timeout.
    stack.env["CELERY_SHUTDOWN_ESCALATE_SECONDS"] = "1"
    worker = stack.worker()
    woo.faults.set(kind="hang", hang_seconds=30)
    result = enqueue(client_app, WOO, full=True)
    wait_for_runs(db, 1)

    worker.signal(signal.SIGTERM)
    worker.wait(timeout=60)
    assert "Cold shutdown" in worker.log()
    broker = redis.Redis.from_url(e2e_settings.broker_url)
    try:
        assert broker.llen("sync-full") == 1  # restored at once, not after the visibility timeout
    finally:
        broker.close()
    assert runs(db, WOO)[-1]["status"] == "running"  # cut off, neither failed nor finished

    woo.faults.clear()
    stack.worker()
    assert result.get(timeout=120)["status"] == "succeeded"
    # Usually the cold shutdown's SystemExit released the lock and the next run starts at once; if the
    # pool child had to be killed instead, the redelivery waits out the lock first (a skipped row).
    assert [r["status"] for r in started_runs(db)] == ["interrupted", "succeeded"]
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []


def test_a_killed_pool_child_is_requeued_at_once_and_takes_over_its_own_lock(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery
) -> None:
    # The OOM killer's way: only the pool process dies. task_reject_on_worker_lost requeues the message
    # at once, before the dead run's lock expires; the lock names its holder, whose process is gone
    # from this host, so the redelivery takes the source over at once instead of waiting or skipping.
    worker = stack.worker()
    woo.faults.set(latency_ms=150)
    result = enqueue(client_app, WOO, full=True)
    wait_until(lambda: started_runs(db) and mirrored_products(db), timeout=60, what="a committed page")
    (child,) = subprocess.check_output(["ps", "-o", "pid=", "--ppid", str(worker.pid)], text=True).split()
    os.kill(int(child), signal.SIGKILL)

    woo.faults.clear()
    assert result.get(timeout=120)["status"] == "succeeded"
    assert [r["status"] for r in runs(db, WOO)] == ["interrupted", "succeeded"]
    assert {r["task_id"] for r in runs(db, WOO)} == {result.id}
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []


def test_a_message_that_always_kills_its_worker_is_dropped_after_the_cap(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery
) -> None:
    # A short visibility timeout so each redelivery comes back within seconds.
    stack.env |= {
        "CELERY_VISIBILITY_TIMEOUT": "6",
        "CELERY_TASK_TIME_LIMIT": "5",
        "CELERY_TASK_SOFT_TIME_LIMIT": "4",
        "WOOCOMMERCE_BREAKER__OPEN_SECONDS": "3",
        "WOOCOMMERCE_BREAKER__OPEN_MAX_SECONDS": "5",
        "ODOO_BREAKER__OPEN_SECONDS": "3",
        "ODOO_BREAKER__OPEN_MAX_SECONDS": "5",
        "SYNC_MAX_REDELIVERIES": "1",
        # The dead run's lock is gone before each redelivery arrives.
        "SYNC_LOCK_TTL_SECONDS": "2",
    }
    woo.faults.set(kind="hang", hang_seconds=30)
    result = enqueue(client_app, WOO, full=True)
    for delivery in (1, 2):  # the first delivery and the one redelivery allowed
        worker = stack.worker()
        wait_for_runs(db, delivery)
        crash(worker)

    stack.worker()
    state, error = outcome(result, 90)
    assert state == "FAILURE"
    assert "redelivery_limit" in str(error)
    assert len(started_runs(db)) == 2  # the third delivery never started a run
    (event,) = events(db, "sync.redelivery_limit")
    assert event["correlation_id"] == result.id
    assert event["payload"]["deliveries"] == 3
