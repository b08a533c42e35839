"""The whole promise, as a property: whatever a shop does, the mirror converges to it.

A hypothesis state machine interleaves upstream activity on the WooCommerce simulator (create, edit,
bulk edit, unpublish, trash, restore, force-delete, type change, variation add/edit/delete,
backdated import, malformed records) with incremental and full runs into PostgreSQL -- and with
activity landing *between the page requests* of a running sync. The shop's clock is skewed by hours
in either direction for a whole example. Once upstream goes quiet:

- one incremental run mirrors every upstream record exactly (deletions are a full run's job);
- one full run then leaves the mirror equal to upstream, deleted state included;
- a following no-op run of either kind rewrites zero rows.

``SYNCWORKER_PROPERTY_EXAMPLES=2000`` runs a long profile (a few thousand examples take an hour here).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from property_profile import property_settings
from sqlalchemy import Engine, text
from sync_sim_mirror import assert_woo_mirror, product_mismatches, table_rows, versions

from models import Product
from worker.sandbox import WooCommerceSimulator
from worker.sandbox.catalog_woo import WooCatalog
from worker.sandbox.wire import Request
from worker.sync import RunStatus, SyncDeps, SyncSource, run_sync

pytestmark = pytest.mark.integration
WOO = SyncSource.WOOCOMMERCE_PRODUCTS


def _products(catalog: WooCatalog, pick: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return sorted((p for p in catalog.iter_products(include_trash=True) if pick(p)), key=lambda p: p["id"])


def _live_variable(catalog: WooCatalog) -> list[dict[str, Any]]:
    return _products(catalog, lambda p: p["type"] == "variable" and p["status"] != "trash")


def create(catalog: WooCatalog, rnd: random.Random) -> None:
    catalog.create_product(name=f"New {rnd.randrange(10**6)}")


def create_variable(catalog: WooCatalog, rnd: random.Random) -> None:
    catalog.create_product(type="variable", variation_count=rnd.randint(1, 3))


def edit(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _products(catalog, lambda p: True)
    if products:
        catalog.change(
            rnd.choice(products)["id"], name=f"Edit {rnd.randrange(10**6)}", sku=f"S{rnd.randrange(999)}"
        )


def bulk_edit(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _products(catalog, lambda p: p["status"] != "trash")
    for product in rnd.sample(products, min(len(products), rnd.randint(2, 8))):
        catalog.change(product["id"], regular_price=f"{rnd.randint(1, 500)}.{rnd.randint(0, 99):02d}")


def unpublish(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _products(catalog, lambda p: p["status"] == "publish")
    if products:
        catalog.change(rnd.choice(products)["id"], status=rnd.choice(["private", "draft"]))


def trash(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _products(catalog, lambda p: p["status"] != "trash")
    if products:
        catalog.trash(rnd.choice(products)["id"])


def restore(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _products(catalog, lambda p: p["status"] == "trash")
    if products:
        catalog.restore(rnd.choice(products)["id"])


def force_delete(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _products(catalog, lambda p: True)
    if len(products) > 1:
        catalog.delete(rnd.choice(products)["id"])


def type_change(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _live_variable(catalog)
    if products:
        catalog.change(rnd.choice(products)["id"], type="simple")


def variation_add(catalog: WooCatalog, rnd: random.Random) -> None:
    products = _live_variable(catalog)
    if products:
        catalog.create_variation(rnd.choice(products)["id"], regular_price=f"{rnd.randint(1, 90)}")


def variation_edit(catalog: WooCatalog, rnd: random.Random) -> None:
    products = [p for p in _live_variable(catalog) if p["variations"]]
    if products:
        product = rnd.choice(products)
        catalog.change_variation(
            product["id"], rnd.choice(product["variations"]), sku=f"V{rnd.randrange(999)}"
        )


def variation_delete(catalog: WooCatalog, rnd: random.Random) -> None:
    products = [p for p in _live_variable(catalog) if p["variations"]]
    if products:
        product = rnd.choice(products)
        catalog.delete_variation(product["id"], rnd.choice(product["variations"]))


def backdated_import(catalog: WooCatalog, rnd: random.Random) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=rnd.randint(1, 900))
    catalog.create_product(type=rnd.choice(["simple", "variable"]), date_created=when)


MUTATIONS: dict[str, Callable[[WooCatalog, random.Random], None]] = {
    f.__name__: f
    for f in (
        create, create_variable, edit, bulk_edit, unpublish, trash, restore, force_delete, type_change,
        variation_add, variation_edit, variation_delete, backdated_import,
    )
}  # fmt: skip
seen_kinds: set[str] = set()


def snapshot(catalog: WooCatalog) -> str:
    rows = [{k: v for k, v in r.items() if k != "related_ids"} for r in catalog.expected_rows()]
    return json.dumps(rows, sort_keys=True, default=str)


class ShopMirror(RuleBasedStateMachine):
    """One shop, one mirror; ``make_deps`` and ``engine`` are set by the test before it runs."""

    make_deps: Callable[..., SyncDeps]
    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        self.sim: WooCommerceSimulator | None = None

    @initialize(seed=st.integers(0, 10**6), skew_hours=st.sampled_from([-5, 0, 3]))
    def start(self, seed: int, skew_hours: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE products, event_log, sync_state, sync_runs RESTART IDENTITY"))
        self.sim = WooCommerceSimulator(seed=seed, size=25).start()
        self.sim.skew = dt.timedelta(hours=skew_hours)
        seen_kinds.add(f"skew {skew_hours:+d}h")
        # Runs here are seconds apart: the production overlap (minutes) would re-read everything and
        # hide any watermark error. One second is the least a second-resolution cursor needs.
        self.deps = self.make_deps(self.sim, sync_overlap_seconds=1)

    @property
    def catalog(self) -> WooCatalog:
        assert self.sim is not None
        return self.sim.catalog

    def _sync(self, *, full: bool) -> Any:
        result = run_sync(WOO, self.deps, full=full, task_id=None, should_stop=lambda: False)
        assert result.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL), result.error
        return result

    @rule(kind=st.sampled_from(sorted(MUTATIONS)), seed=st.integers(0, 10**6))
    def upstream_activity(self, kind: str, seed: int) -> None:
        self._mutate(kind, random.Random(seed))

    def _mutate(self, kind: str, rnd: random.Random) -> None:
        before = snapshot(self.catalog)
        MUTATIONS[kind](self.catalog, rnd)
        if snapshot(self.catalog) != before:  # counted only when it changed something
            seen_kinds.add(kind)

    @rule(full=st.booleans())
    def sync(self, full: bool) -> None:
        self._sync(full=full)

    @rule(
        full=st.booleans(),
        kinds=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
        at_request=st.integers(1, 6),
        seed=st.integers(0, 10**6),
    )
    def sync_while_upstream_changes(self, full: bool, kinds: list[str], at_request: int, seed: int) -> None:
        """Activity lands between two requests of the running sync (pages, variations, id scans)."""
        assert self.sim is not None
        count = 0
        lock = threading.Lock()
        rnd = random.Random(seed)

        def hook(request: Request) -> None:
            nonlocal count
            with lock:
                count += 1
                if count == at_request:
                    for kind in kinds:
                        self._mutate(kind, rnd)

        self.sim.before_request = hook
        try:
            self._sync(full=full)
        finally:
            self.sim.before_request = None
        seen_kinds.add("during paging")

    @rule(full=st.booleans(), seed=st.integers(0, 10**6))
    def sync_with_a_malformed_record(self, full: bool, seed: int) -> None:
        """One record comes back without a usable id for one run; nothing may be tombstoned for it."""
        records = [r for r in self.catalog.expected_rows() if r.get("status") != "trash"]
        record = random.Random(seed).choice(records)
        record_id = int(record["id"])
        self.catalog.corrupt(record_id, id=None)
        if record.get("parent_id"):
            self.catalog.bump(int(record["parent_id"]))
        else:
            self.catalog.bump(record_id)
        try:
            result = self._sync(full=full)
        finally:
            self.catalog.corrupt(record_id, id=record_id)
        assert result.status is RunStatus.PARTIAL
        row = table_rows(self.engine, Product, "woo_id").get(record_id)
        assert row is None or row["deleted_at"] is None
        seen_kinds.add("malformed record")

    def teardown(self) -> None:
        if self.sim is None:
            return
        try:
            self.sim.before_request = None
            self._sync(full=False)
            mirror = table_rows(self.engine, Product, "woo_id")
            upstream = {int(r["id"]): r for r in self.catalog.expected_rows()}
            missing = sorted(set(upstream) - set(mirror))
            stale = {
                k: p for k, r in upstream.items() if k in mirror and (p := product_mismatches(mirror[k], r))
            }
            assert (missing, stale) == ([], {}), "the quiet incremental run left records behind"
            self._sync(full=True)
            assert_woo_mirror(self.engine, self.catalog)
            before = versions(self.engine, "products")
            for full in (False, True):
                assert self._sync(full=full).counts.written == 0
            assert versions(self.engine, "products") == before
        finally:
            self.sim.stop()


def test_the_mirror_converges_to_the_shop_whatever_it_does(woo_deps: Any, clean_pg: Engine) -> None:
    seen_kinds.clear()
    ShopMirror.make_deps = staticmethod(woo_deps)  # type: ignore[assignment]
    ShopMirror.engine = clean_pg
    run_state_machine_as_test(
        ShopMirror,
        settings=property_settings(),
    )
    # Every kind of activity was exercised at least once in this run, not just drawn as possible.
    assert set(MUTATIONS) | {"during paging", "malformed record"} <= seen_kinds
