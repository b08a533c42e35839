"""Warm shutdown and crashes in the middle of a multi-page sync: nothing lost, nothing duplicated."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from e2e_harness import (
    Stack,
    enqueue,
    events,
    expected_products,
    mirrored_products,
    product_mismatches,
    runs,
    wait_until,
)
from sqlalchemy import Engine

from worker.infra.settings import Settings
from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"
# Slow enough that a full run spans many seconds of pages, so the signal lands mid-run.
PAGE_LATENCY_MS = 150


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    """A catalog of many pages, so a signal after the first committed page leaves most of it to do."""
    with WooCommerceSimulator(seed=11, size=800) as sim:
        yield sim


def wait_mid_run(db: Engine) -> None:
    # Committed rows plus a run still open: at least one page is done and more are to come.
    wait_until(
        lambda: any(r["status"] == "running" for r in runs(db, WOO)) and mirrored_products(db),
        timeout=60,
        what="a run in progress",
    )


def assert_mirror_exact(db: Engine, woo: WooCommerceSimulator, *, committed_before: int) -> None:
    """The mirror equals upstream, and the resumed run wrote exactly the records not yet committed."""
    expected = expected_products(woo.catalog)
    assert product_mismatches(expected, mirrored_products(db)) == []
    resumed = runs(db, WOO)[-1]
    assert resumed["inserted"] == len(expected) - committed_before  # no page lost
    assert resumed["updated"] == 0  # no committed page done twice


def test_sigterm_hands_the_rest_back_and_the_next_worker_resumes(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_settings: Settings
) -> None:
    first = stack.worker(name="sync-a")
    woo.faults.set(latency_ms=PAGE_LATENCY_MS)
    result = enqueue(client_app, WOO, full=True)
    wait_mid_run(db)

    first.signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    (interrupted,) = runs(db, WOO)
    assert interrupted["status"] == "interrupted"
    committed = len(mirrored_products(db))
    assert 0 < committed < len(expected_products(woo.catalog))
    assert interrupted["inserted"] == committed
    assert [e["payload"]["run_id"] for e in events(db, "sync.interrupted")] == [interrupted["id"]]
    # The same message is back on the queue, and no crash was counted against it.
    broker = redis.Redis.from_url(e2e_settings.broker_url)
    assert broker.llen("sync-full") == 1
    assert broker.get(f"{e2e_settings.redis_key_prefix}:deliveries:{result.id}") == b"0"
    # The node's shutdown flag outlives it; a restart under the same name has to clear it.
    assert broker.exists(f"{e2e_settings.redis_key_prefix}:shutdown:sync-a@{socket.gethostname()}")
    broker.close()

    woo.faults.clear()
    # Restarted under the same node name, as a service manager does: the stale flag must not stop it.
    stack.worker(name="sync-a")
    summary = result.get(timeout=120)
    assert summary["status"] == "succeeded"
    assert [r["task_id"] for r in runs(db, WOO)] == [result.id, result.id]
    assert_mirror_exact(db, woo, committed_before=committed)


def test_sigkill_redelivers_after_the_visibility_timeout_and_resumes(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery
) -> None:
    # A shorter visibility timeout (sweep every 4 s) keeps the wait for the redelivery short.
    stack.env |= {"CELERY_VISIBILITY_TIMEOUT": "16", "CELERY_TASK_TIME_LIMIT": "15"}
    stack.env |= {"CELERY_TASK_SOFT_TIME_LIMIT": "14", "SYNC_LOCK_TTL_SECONDS": "5"}
    stack.env |= {f"{u}_BREAKER__OPEN_MAX_SECONDS": "10" for u in ("ODOO", "WOOCOMMERCE")}
    first = stack.worker()
    woo.faults.set(latency_ms=PAGE_LATENCY_MS)
    result = enqueue(client_app, WOO, full=True)
    wait_mid_run(db)

    first.signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    # The machine went down with it: no orphaned pool child may finish the run behind our back.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(first.pid, signal.SIGKILL)
    committed = len(mirrored_products(db))
    assert 0 < committed < len(expected_products(woo.catalog))

    woo.faults.clear()
    stack.worker()
    # Back after the visibility timeout plus one restore sweep (about 20 s with these settings).
    summary = result.get(timeout=150)
    assert summary["status"] == "succeeded"
    statuses = [r["status"] for r in runs(db, WOO)]
    # The dead run is closed by its successor, which resumed from the last committed page.
    assert statuses == ["interrupted", "succeeded"]
    assert_mirror_exact(db, woo, committed_before=committed)
