"""Several shops and Odoo databases on one fleet: each source's rows, bookmarks, breaker and
reconciliation are its own, though their upstream ids collide (every shop numbers from the same start)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import Engine, select, text
from sync_sim_mirror import assert_odoo_mirror, assert_woo_mirror, table_rows

from models import Product, Supplier, SyncState
from worker.breaker import build_breaker
from worker.infra.db import make_session_factory
from worker.infra.eventlog import EventLog
from worker.infra.settings import Settings
from worker.kinds import get_kind
from worker.kinds.odoo.client import WANTED_FIELDS
from worker.sandbox import OdooSimulator, WooCommerceSimulator
from worker.sources.config import SourceConfig
from worker.sync import RunStatus, SyncDeps, run_sync
from worker.upstream import build_retrying

pytestmark = pytest.mark.integration


def fields(sim: OdooSimulator) -> set[str]:
    return {f for f in WANTED_FIELDS if not (f == "mobile" and sim.version.startswith("19"))}


def never() -> bool:
    return False


@pytest.fixture
def shops() -> Iterator[tuple[WooCommerceSimulator, WooCommerceSimulator]]:
    with WooCommerceSimulator(seed=21, size=40) as a, WooCommerceSimulator(seed=22, size=40) as b:
        yield a, b


@pytest.fixture
def databases() -> Iterator[tuple[OdooSimulator, OdooSimulator]]:
    with OdooSimulator(seed=31, size=30, db="erp-a") as a, OdooSimulator(seed=32, size=30, db="erp-b") as b:
        yield a, b


def woo_source(name: str, sim: WooCommerceSimulator) -> SourceConfig:
    credentials = {
        "consumer_key": SecretStr(sim.consumer_key),
        "consumer_secret": SecretStr(sim.consumer_secret),
    }
    return SourceConfig(name=name, kind="woocommerce", url=sim.base_url, credentials=credentials)


def odoo_source(name: str, sim: OdooSimulator) -> SourceConfig:
    options = {"db": sim.db, "username": sim.login}
    credentials = {"api_key": SecretStr(sim.api_key)}
    return SourceConfig(name=name, kind="odoo", url=sim.base_url, options=options, credentials=credentials)


@pytest.fixture
def source_deps(
    clean_pg: Engine, redis_client: redis.Redis, real_settings: Callable[..., Settings]
) -> Callable[[SourceConfig], SyncDeps]:
    """Deps built as the workers build them: the kind configures the source's settings and breaker."""
    fleet = real_settings()

    def make(source: SourceConfig) -> SyncDeps:
        kind = get_kind(source.kind)
        settings = kind.configure(fleet, source)
        events = EventLog(clean_pg, redis_client, settings)
        breaker = build_breaker(kind.breaker_name(source.name), settings, redis_client, events,
                                kind.breaker_policy(fleet, source))  # fmt: skip
        client = kind.build_client(settings, breaker, events, build_retrying(settings, sleep=lambda _: None))
        return SyncDeps(settings, make_session_factory(clean_pg), redis_client, events, breaker, client, kind)

    return make


def sync(name: str, deps: SyncDeps, *, full: bool) -> Any:
    return run_sync(name, deps, full=full, task_id=None, should_stop=never)


def shared_ids(a: WooCommerceSimulator, b: WooCommerceSimulator) -> set[int]:
    ids_a = {int(p["id"]) for p in a.catalog.iter_products(include_trash=False)}
    return ids_a & {int(p["id"]) for p in b.catalog.iter_products(include_trash=False)}


def test_two_shops_sharing_ids_mirror_side_by_side_and_one_reconciles_only_its_own_rows(
    shops: tuple[WooCommerceSimulator, WooCommerceSimulator], source_deps: Any, clean_pg: Engine
) -> None:
    a, b = shops
    deps_a, deps_b = source_deps(woo_source("shop-a", a)), source_deps(woo_source("shop-b", b))
    shared = shared_ids(a, b)
    assert len(shared) >= 10, "the two shops must share product ids for this test to mean anything"
    assert sync("shop-a", deps_a, full=True).status is RunStatus.SUCCEEDED
    assert sync("shop-b", deps_b, full=True).status is RunStatus.SUCCEEDED
    assert_woo_mirror(clean_pg, a.catalog, "shop-a")
    assert_woo_mirror(clean_pg, b.catalog, "shop-b")

    gone = sorted(shared)[0]
    a.catalog.delete(gone)  # force-deleted in shop A only
    b.catalog.change(sorted(shared)[1], name="renamed in B")
    result = sync("shop-a", deps_a, full=True)
    assert result.counts.marked_deleted >= 1
    rows_a, rows_b = (
        table_rows(clean_pg, Product, "woo_id", "shop-a"),
        table_rows(clean_pg, Product, "woo_id", "shop-b"),
    )
    assert rows_a[gone]["deleted_at"] is not None
    assert rows_b[gone]["deleted_at"] is None  # the same id in shop B is another product, still there
    assert all(
        r["deleted_at"] is None
        for k, r in rows_b.items()
        if k in {int(p["id"]) for p in b.catalog.expected_rows()}
    )
    assert rows_b[sorted(shared)[1]]["name"] != "renamed in B"  # A's run read nothing of B
    assert sync("shop-b", deps_b, full=False).status is RunStatus.SUCCEEDED
    assert_woo_mirror(clean_pg, a.catalog, "shop-a")
    assert_woo_mirror(clean_pg, b.catalog, "shop-b")
    with clean_pg.connect() as conn:
        states = dict(conn.execute(select(SyncState.source, SyncState.watermark)).all())
    assert set(states) == {"shop-a", "shop-b"} and all(states.values())


def test_a_shop_whose_upstream_is_down_opens_only_its_own_breaker(
    shops: tuple[WooCommerceSimulator, WooCommerceSimulator], source_deps: Any, clean_pg: Engine
) -> None:
    a, b = shops
    deps_a, deps_b = source_deps(woo_source("shop-a", a)), source_deps(woo_source("shop-b", b))
    a.faults.set(kind="status", status=503, rate=1.0)
    for _ in range(3):
        sync("shop-a", deps_a, full=False)
    assert str(deps_a.breaker.state()) == "open"
    assert str(deps_b.breaker.state()) == "closed"
    assert sync("shop-b", deps_b, full=True).status is RunStatus.SUCCEEDED
    assert_woo_mirror(clean_pg, b.catalog, "shop-b")
    with clean_pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM products WHERE source = 'shop-a'")).scalar_one() == 0
        skipped = conn.execute(text("SELECT count(*) FROM event_log WHERE aggregate_id = 'shop-a' "
                                    "AND event_type = 'sync.skipped_breaker_open'")).scalar_one()  # fmt: skip
        failures = text(
            "SELECT DISTINCT aggregate_id FROM event_log WHERE event_type LIKE 'woocommerce.sync.failed.%'"
        )
        failed = conn.execute(failures).scalars().all()
    assert skipped >= 1
    assert failed == ["woocommerce:shop-a"]  # every failure names the source it belongs to


def test_two_odoo_databases_sharing_ids_reconcile_only_their_own_suppliers(
    databases: tuple[OdooSimulator, OdooSimulator], source_deps: Any, clean_pg: Engine
) -> None:
    a, b = databases
    deps_a, deps_b = source_deps(odoo_source("erp-a", a)), source_deps(odoo_source("erp-b", b))
    assert sync("erp-a", deps_a, full=True).status is RunStatus.SUCCEEDED
    assert sync("erp-b", deps_b, full=True).status is RunStatus.SUCCEEDED
    ids_a = {p["id"] for p in a.catalog.suppliers()}
    shared = sorted(ids_a & {p["id"] for p in b.catalog.suppliers()})
    assert shared, "the two databases must share supplier ids"
    a.catalog.delete(shared[0])
    assert sync("erp-a", deps_a, full=True).counts.marked_deleted == 1
    rows_b = table_rows(clean_pg, Supplier, "odoo_id", "erp-b")
    assert rows_b[shared[0]]["deleted_at"] is None
    assert table_rows(clean_pg, Supplier, "odoo_id", "erp-a")[shared[0]]["deleted_at"] is not None
    assert_odoo_mirror(clean_pg, a.catalog, fields(a), "erp-a")
    assert_odoo_mirror(clean_pg, b.catalog, fields(b), "erp-b")
