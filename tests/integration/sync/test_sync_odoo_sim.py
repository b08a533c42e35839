"""run_sync against the Odoo simulator (XML-RPC on 17, JSON-2 on 19), into PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sync_sim_mirror import assert_odoo_mirror, table_rows, versions

from models import Supplier
from worker.kinds.odoo.client import WANTED_FIELDS
from worker.sandbox import OdooSimulator
from worker.sync import RunStatus, SyncSource, run_sync

pytestmark = pytest.mark.integration
ODOO = SyncSource.ODOO_SUPPLIERS


def never() -> bool:
    return False


@pytest.fixture(params=["17.0", "19.0"])
def sim(request: pytest.FixtureRequest) -> Iterator[OdooSimulator]:
    with OdooSimulator(seed=3, size=200, version=request.param) as odoo:
        yield odoo


def sync(deps: Any, *, full: bool = False, should_stop: Any = never) -> Any:
    return run_sync(ODOO, deps, full=full, task_id=None, should_stop=should_stop)


def fields(sim: OdooSimulator) -> set[str]:
    return {f for f in WANTED_FIELDS if not (f == "mobile" and sim.version.startswith("19"))}


def changed(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]) -> set[int]:
    return {k for k in after if k not in before or after[k]["last_synced_at"] != before[k]["last_synced_at"]}


def test_full_incremental_drift_and_noop(sim: OdooSimulator, odoo_deps: Any, clean_pg: Engine) -> None:
    deps = odoo_deps(sim)
    first = sync(deps, full=True)
    assert first.status is RunStatus.SUCCEEDED, first.error
    assert_odoo_mirror(clean_pg, sim.catalog, fields(sim))
    suppliers = sorted(p["id"] for p in sim.catalog.suppliers())
    customers = [p["id"] for p in sim.catalog.iter_partners() if p["supplier_rank"] == 0]

    sim.catalog.change(suppliers[0], email="new@vendor.test")
    sim.catalog.archive(suppliers[1])
    sim.catalog.make_supplier(customers[0])  # rank raised by SQL: write_date does not move
    sim.catalog.delete(suppliers[2])  # unlink: only a full run notices
    created = sim.catalog.create_partner(name="Fresh Vendor", supplier_rank=1, is_company=True)
    before = table_rows(clean_pg, Supplier, "odoo_id")
    incremental = sync(deps)
    assert incremental.status is RunStatus.SUCCEEDED, incremental.error
    after = table_rows(clean_pg, Supplier, "odoo_id")
    assert changed(before, after) == {suppliers[0], suppliers[1], customers[0], created["id"]}
    assert after[suppliers[1]]["active"] is False
    assert after[suppliers[2]]["deleted_at"] is None

    full = sync(deps, full=True)
    assert full.counts.marked_deleted == 1
    assert_odoo_mirror(clean_pg, sim.catalog, fields(sim))

    snapshot, row_versions = table_rows(clean_pg, Supplier, "odoo_id"), versions(clean_pg, "suppliers")
    noop = sync(deps)
    assert noop.status is RunStatus.SUCCEEDED
    assert (noop.counts.inserted, noop.counts.updated, noop.counts.marked_deleted) == (0, 0, 0)
    assert table_rows(clean_pg, Supplier, "odoo_id") == snapshot
    assert versions(clean_pg, "suppliers") == row_versions


def test_interrupt_then_resume(sim: OdooSimulator, odoo_deps: Any, clean_pg: Engine) -> None:
    deps = odoo_deps(sim, odoo_page_size=20)  # several pages from a small catalog
    polls = itertools.count()
    first = sync(deps, full=True, should_stop=lambda: next(polls) == 1)
    assert first.status is RunStatus.INTERRUPTED and first.resumable
    resumed = sync(deps, full=True)
    assert resumed.status is RunStatus.SUCCEEDED, resumed.error
    assert first.counts.inserted + resumed.counts.inserted == sum(1 for _ in sim.catalog.suppliers())
    assert_odoo_mirror(clean_pg, sim.catalog, fields(sim))
