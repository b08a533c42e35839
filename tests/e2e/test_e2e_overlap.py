"""Overlap: the same sync enqueued five times while one runs; exactly one runs, the rest are skipped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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

from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    """Many pages, so the first run is still going when the other requests arrive."""
    with WooCommerceSimulator(seed=5, size=800) as sim:
        yield sim


def wait_running(db: Engine) -> None:
    # The run row shows counts only when it closes; committed pages are what prove it is under way.
    wait_until(
        lambda: any(r["status"] == "running" for r in runs(db, WOO)) and mirrored_products(db),
        timeout=60,
        what="a run in progress",
    )


def test_overlapping_requests_run_once(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery
) -> None:
    # A free process for every request, so each one starts while the first is still running.
    stack.worker(concurrency=5)
    woo.faults.set(latency_ms=200)  # a run of many seconds
    first = enqueue(client_app, WOO, full=True)
    wait_running(db)
    others = [enqueue(client_app, WOO, full=True) for _ in range(4)]
    assert [r.get(timeout=120)["status"] for r in others] == ["skipped_already_running"] * 4
    woo.faults.clear()  # the point is made; let the first run finish well inside its time limit
    assert first.get(timeout=120)["status"] == "succeeded"
    recorded = sorted(r["status"] for r in runs(db, WOO))
    assert recorded == ["skipped_already_running"] * 4 + ["succeeded"]
    assert len(events(db, "sync.skipped_already_running")) == 4
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []
