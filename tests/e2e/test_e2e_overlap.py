"""Every request is served: requests that meet a running sync become one follow-up run after it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from celery import Celery
from click.testing import CliRunner
from e2e_harness import (
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

from worker.cli import main
from worker.cli.output import CliState
from worker.infra.settings import Settings
from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    """Many pages, so the first run is still going when the other requests arrive."""
    with WooCommerceSimulator(seed=5, size=800) as sim:
        yield sim


def wait_running(db: Engine) -> None:
    wait_until(
        lambda: any(r["status"] == "running" for r in runs(db, WOO)) and mirrored_products(db),
        timeout=60,
        what="a run in progress",
    )


def started(db: Engine) -> list[dict[str, object]]:
    return [r for r in runs(db, WOO) if r["status"] != "deferred"]


def test_five_requests_during_a_run_make_exactly_one_follow_up_run(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery
) -> None:
    # A free process for every request, so each one arrives while the first is still running.
    stack.worker(concurrency=3)
    woo.faults.set(latency_ms=200)  # a run of many seconds
    first = enqueue(client_app, WOO, full=True)
    wait_running(db)
    others = [enqueue(client_app, WOO, full=True) for _ in range(5)]
    states = [outcome(r, 120)[0] for r in others]
    assert states == ["DEFERRED"] * 5
    woo.faults.clear()  # the point is made; let the runs finish well inside their time limit
    assert outcome(first, 120)[0] == "SUCCESS"
    wait_until(lambda: len(started(db)) == 2 and started(db)[-1]["status"] == "succeeded", timeout=120,
               what="the follow-up run")  # fmt: skip

    # Exactly one follow-up, full like the requests, after the first run and serving all five.
    first_run, follow_up = started(db)
    assert (first_run["mode"], follow_up["mode"]) == ("full", "full")
    assert follow_up["started_at"] >= first_run["finished_at"]
    deferred = [r for r in runs(db, WOO) if r["status"] == "deferred"]
    assert len(deferred) == 5
    assert sum(not r["details"]["coalesced"] for r in deferred) == 1  # one started it, four joined it
    assert len(events(db, "sync.deferred")) == 5
    # Nothing more is coming: no second follow-up for the coalesced requests.
    with pytest.raises(AssertionError):
        wait_until(lambda: len(started(db)) > 2, timeout=5, what="a third run")
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []


def test_a_full_request_during_an_incremental_run_is_followed_by_a_full_run_that_wait_follows(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_settings: Settings
) -> None:
    stack.worker(concurrency=2)
    woo.faults.set(latency_ms=200)
    incremental = enqueue(client_app, WOO, full=False)  # the first incremental run reads everything
    wait_running(db)
    threading.Timer(2.0, woo.faults.clear).start()  # the full request is in before the run speeds up
    waited = CliRunner().invoke(main, ["sync", WOO, "--full", "--wait", "--timeout", "120"],
                                obj=CliState(settings=e2e_settings), catch_exceptions=False)  # fmt: skip
    assert waited.exit_code == 0, waited.output
    assert outcome(incremental, 120)[0] == "SUCCESS"
    assert [r["mode"] for r in started(db)] == ["incremental", "full"]
    follow_up = started(db)[-1]
    assert follow_up["status"] == "succeeded"
    # --wait followed the follow-up run, not the incremental run its request met.
    assert f"run {follow_up['id']} (full) succeeded" in waited.output
    assert waited.output.rstrip().endswith(f"{WOO} succeeded")
    (deferred,) = [r for r in runs(db, WOO) if r["status"] == "deferred"]
    assert deferred["details"]["followup"] == "full"
