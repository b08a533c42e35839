"""Full, incremental and no-op runs, overlap and an upstream outage, through real worker processes."""

from __future__ import annotations

import time
from typing import Any

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
)
from sqlalchemy import Engine

from worker.cli import main
from worker.cli.output import CliState
from worker.infra.settings import Settings
from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"


def cli(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), obj=CliState(settings=settings), catch_exceptions=False)


def test_full_then_incremental_then_noop(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, e2e_settings: Settings
) -> None:
    stack.worker()
    full = cli(e2e_settings, "sync", WOO, "--full", "--wait", "--timeout", "120")
    assert full.exit_code == 0, full.output
    assert full.output.rstrip().endswith(f"{WOO} succeeded")
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []

    ids = sorted(p["id"] for p in woo.catalog.iter_products(include_trash=False))
    created = woo.catalog.create_product(name="Brand new", regular_price="12.50")
    woo.catalog.change(ids[0], name="Renamed", regular_price="99.99")
    woo.catalog.change(ids[1], status="draft")  # archived out of the shop
    woo.catalog.trash(ids[2])
    time.sleep(1.1)  # upstream timestamps have one-second resolution; the next run starts after them

    inc = cli(e2e_settings, "sync", WOO, "--wait", "--timeout", "120")
    assert inc.exit_code == 0, inc.output
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []
    last = runs(db, WOO)[-1]
    assert (last["mode"], last["status"]) == ("incremental", "succeeded")
    assert last["inserted"] == 1
    assert last["updated"] == 3
    assert mirrored_products(db)[created["id"]]["name"] == "Brand new"

    noop = cli(e2e_settings, "sync", WOO, "--wait", "--timeout", "120")
    assert noop.exit_code == 0, noop.output
    last = runs(db, WOO)[-1]
    assert last["status"] == "succeeded"
    assert (last["inserted"], last["updated"], last["marked_deleted"]) == (0, 0, 0)


def test_upstream_down_opens_the_breaker_and_later_runs_skip(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_settings: Settings
) -> None:
    stack.worker()
    woo.faults.set(kind="status", status=503, rate=1.0)
    state, failed = outcome(enqueue(client_app, WOO, full=True), 120)
    assert state == "FAILURE"
    assert "503" in str(failed)
    served = woo.faults.requests()
    assert served > 0
    # Every failed call has its row.
    failures = events(db, "woocommerce.sync.failed")
    assert len(failures) == served
    assert {e["payload"]["status_code"] for e in failures} == {503}

    # More failing runs until the breaker has seen enough to open.
    for _ in range(10):
        if outcome(enqueue(client_app, WOO, full=False), 120)[0] == "SKIPPED":
            break
    else:
        pytest.fail("the breaker never opened")
    assert events(db, "breaker.")  # the transition is in the audit trail
    before = woo.faults.requests()
    skipped = cli(e2e_settings, "sync", WOO, "--wait", "--timeout", "60")
    assert skipped.exit_code == 4, skipped.output
    assert woo.faults.requests() == before  # no call reached the upstream
    assert runs(db, WOO)[-1]["status"] == "skipped_breaker_open"
    # Each 503 the upstream served has its row; the refused calls are recorded as the breaker's doing.
    failures = [e["payload"] for e in events(db, "woocommerce.sync.failed")]
    assert sum(p["status_code"] == 503 for p in failures) == woo.faults.requests()
    assert {p["error_class"] for p in failures if p["status_code"] is None} == {"CircuitOpenError"}
