"""run_sync against the WooCommerce simulator over real HTTP, into PostgreSQL, with the real lock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sync_sim_mirror import assert_woo_mirror, table_rows, versions

from models import Product
from worker.sandbox import WooCommerceSimulator
from worker.sync import RunStatus, SyncSource, run_sync

pytestmark = pytest.mark.integration
WOO = SyncSource.WOOCOMMERCE_PRODUCTS


def never() -> bool:
    return False


@pytest.fixture
def sim() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=7, size=150) as woo:
        yield woo


def sync(deps: Any, *, full: bool = False, should_stop: Any = never) -> Any:
    return run_sync(WOO, deps, full=full, task_id=None, should_stop=should_stop)


def changed(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]) -> set[int]:
    return {k for k in after if k not in before or after[k]["last_synced_at"] != before[k]["last_synced_at"]}


def test_full_incremental_and_noop(sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine) -> None:
    deps = woo_deps(sim)
    first = sync(deps, full=True)
    assert first.status is RunStatus.SUCCEEDED, first.error
    assert_woo_mirror(clean_pg, sim.catalog)
    catalog = table_rows(clean_pg, Product, "woo_id")
    products = [r for r in catalog.values() if r["parent_woo_id"] is None and r["status"] != "trash"]
    simple = [r["woo_id"] for r in products if r["type"] == "simple"]
    variable = [r["woo_id"] for r in products if r["type"] == "variable"]

    created = sim.catalog.create_product(name="Brand new", regular_price="12.30", price="12.30")
    parent = sim.catalog.create_product(type="variable", variation_count=2)
    sim.catalog.change(simple[0], regular_price="99.99", price="99.99")
    sim.catalog.change(simple[1], status="private")
    sim.catalog.trash(simple[2])
    sim.catalog.delete(simple[3])  # force delete: only a full run notices
    stock_only = simple[4]
    sim.catalog.change_stock(stock_only, 3)  # no date bump: only a full run notices
    before = table_rows(clean_pg, Product, "woo_id")

    incremental = sync(deps)
    assert incremental.status is RunStatus.SUCCEEDED, incremental.error
    after = table_rows(clean_pg, Product, "woo_id")
    new_variations = set(parent["variations"])
    assert changed(before, after) == {created["id"], parent["id"], *new_variations, *simple[:3]}
    assert after[simple[3]]["deleted_at"] is None
    assert after[stock_only]["stock_quantity"] == before[stock_only]["stock_quantity"]

    full = sync(deps, full=True)
    assert full.status is RunStatus.SUCCEEDED, full.error
    assert_woo_mirror(clean_pg, sim.catalog)
    assert full.counts.marked_deleted == 1
    assert table_rows(clean_pg, Product, "woo_id")[stock_only]["stock_quantity"] == 3
    assert variable  # the generated catalog has variable products, so variations were exercised

    sync(deps)
    snapshot, row_versions = table_rows(clean_pg, Product, "woo_id"), versions(clean_pg, "products")
    noop = sync(deps)
    assert noop.status is RunStatus.SUCCEEDED
    assert (noop.counts.inserted, noop.counts.updated, noop.counts.marked_deleted) == (0, 0, 0)
    assert table_rows(clean_pg, Product, "woo_id") == snapshot
    assert versions(clean_pg, "products") == row_versions


def test_interrupt_then_resume(sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine) -> None:
    deps = woo_deps(sim)
    polls = itertools.count()
    first = sync(deps, full=True, should_stop=lambda: next(polls) == 1)
    assert first.status is RunStatus.INTERRUPTED and first.resumable
    assert 0 < len(table_rows(clean_pg, Product, "woo_id")) < sum(1 for _ in sim.catalog.expected_rows())
    resumed = sync(deps, full=True)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert_woo_mirror(clean_pg, sim.catalog)
    total = sum(1 for _ in sim.catalog.expected_rows())
    assert first.counts.inserted + resumed.counts.inserted == total


def test_unreadable_listing_fails_and_never_marks_deleted(
    sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine
) -> None:
    deps = woo_deps(sim)
    assert sync(deps, full=True).status is RunStatus.SUCCEEDED
    sim.faults.set(kind="html200", rate=1.0)  # a caching plugin's HTML page with status 200
    result = sync(deps, full=True)
    assert result.status in (RunStatus.FAILED, RunStatus.SKIPPED_BREAKER_OPEN, RunStatus.INTERRUPTED)
    assert all(r["deleted_at"] is None for r in table_rows(clean_pg, Product, "woo_id").values())


def test_breaker_open_skips_with_next_attempt(
    sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine
) -> None:
    deps = woo_deps(sim)
    sim.faults.set(kind="status", status=503, rate=1.0)
    failed = sync(deps)
    assert failed.status is RunStatus.FAILED  # retries spent; the breaker counted the failures
    requests_before = sim.faults.requests()
    skipped = sync(deps)
    assert skipped.status is RunStatus.SKIPPED_BREAKER_OPEN
    assert skipped.retry_after is not None and skipped.retry_after > 0
    assert sim.faults.requests() == requests_before  # refused locally, nothing sent
    with clean_pg.connect() as conn:
        from sqlalchemy import text

        details = conn.execute(text("SELECT details FROM sync_runs ORDER BY id DESC LIMIT 1")).scalar_one()
        events = conn.execute(
            text("SELECT count(*) FROM event_log WHERE event_type = 'sync.skipped_breaker_open'")
        )
        assert events.scalar_one() == 1
    assert details["next_attempt_at"]


def test_upstream_failure_events_carry_the_run_correlation_id(
    sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine
) -> None:
    from sqlalchemy import text

    deps = woo_deps(sim)
    sim.faults.set(kind="status", status=503, rate=1.0)
    failed = sync(deps)
    assert failed.status is RunStatus.FAILED
    with clean_pg.connect() as conn:
        rows = conn.execute(
            text("SELECT correlation_id FROM event_log WHERE event_type LIKE 'woocommerce.sync.failed.%'")
        ).all()
    assert rows  # every attempt's failure was recorded ...
    assert {r.correlation_id for r in rows} == {f"{WOO.value}:{failed.run_id}"}  # ... under this run
    assert deps.client.correlation_id is None  # the cached client does not lend it to the next caller
