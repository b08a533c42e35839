"""Page upserts on PostgreSQL and SQLite: unchanged rows not rewritten, pages independent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text, update

from models import Product
from worker.infra.db import make_engine, upgrade_database
from worker.kinds import get_kind
from worker.kinds.woocommerce.normalize import normalize_product
from worker.sync.sources import SyncSource
from worker.sync.store import upsert_page

pytestmark = pytest.mark.integration
SPEC = get_kind("woocommerce").spec(SyncSource.WOOCOMMERCE_PRODUCTS)
T1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T2 = T1 + dt.timedelta(hours=1)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        yield request.getfixturevalue("clean_pg")
        return
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade_database(url)
    sqlite_engine = make_engine(url)
    yield sqlite_engine
    sqlite_engine.dispose()


def product(pid: int, **fields: Any) -> dict[str, Any]:
    raw = {"id": pid, "name": f"P{pid}", "type": "simple", "status": "publish", "sku": "SAME",
           "price": "19.999", "regular_price": "0.01", "sale_price": "", "manage_stock": True,
           "stock_quantity": -2,
           "date_modified_gmt": "2026-01-01T00:00:00", "meta_data": []}  # fmt: skip
    return normalize_product({**raw, **fields})


def upsert(engine: Engine, rows: list[dict[str, Any]], now: dt.datetime) -> tuple[int, int, int]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "products" in statement and statement.lstrip().upper().startswith("INSERT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as conn:
            written = upsert_page(conn, SPEC, rows, now)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    if engine.dialect.name == "sqlite":
        assert len(statements) == 1  # one INSERT ... ON CONFLICT per page, whatever its size
    # PostgreSQL: COPY into a staging table and one INSERT ... SELECT, on the driver cursor (not seen here)
    return written.inserted, written.updated, written.unchanged


def stored(engine: Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["woo_id"]: dict(r) for r in conn.execute(select(Product.__table__)).mappings()}


def test_insert_update_unchanged(engine: Engine) -> None:
    assert upsert(engine, [product(1), product(2), product(3)], T1) == (3, 0, 0)
    assert upsert(engine, [product(1), product(2, price="20"), product(4)], T2) == (1, 1, 1)
    rows = stored(engine)
    assert rows[1]["last_synced_at"] == T1  # unchanged: not rewritten
    assert (rows[2]["first_synced_at"], rows[2]["last_synced_at"]) == (T1, T2)
    assert rows[2]["price"] == Decimal("20")
    assert rows[4]["first_synced_at"] == T2


def test_exact_decimals_and_shared_skus(engine: Engine) -> None:
    upsert(engine, [product(1), product(2, price="0.10")], T1)
    rows = stored(engine)
    assert rows[1]["price"] == Decimal("19.999") and rows[1]["regular_price"] == Decimal("0.01")
    assert rows[2]["price"] == Decimal("0.1")
    assert rows[1]["sku"] == rows[2]["sku"] == "SAME"
    assert rows[1]["stock_quantity"] == -2


def test_noop_page_leaves_rows_untouched(engine: Engine) -> None:
    upsert(engine, [product(1), product(2)], T1)
    before = stored(engine)
    versions = _versions(engine)
    assert upsert(engine, [product(1), product(2)], T2) == (0, 0, 2)
    assert stored(engine) == before
    assert _versions(engine) == versions


def _versions(engine: Engine) -> Any:
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return conn.execute(text("SELECT woo_id, xmin::text FROM products ORDER BY woo_id")).all()


def test_reappearing_record_clears_its_tombstone(engine: Engine) -> None:
    upsert(engine, [product(1)], T1)
    with engine.begin() as conn:
        conn.execute(update(Product.__table__).values(deleted_at=T1))
    assert upsert(engine, [product(1)], T2) == (0, 1, 0)
    row = stored(engine)[1]
    assert row["deleted_at"] is None and row["first_synced_at"] == T1


def test_repeated_key_within_a_page_keeps_the_last(engine: Engine) -> None:
    assert upsert(engine, [product(1, name="old"), product(1, name="new")], T1) == (1, 0, 0)
    assert stored(engine)[1]["name"] == "new"


class Abandon(Exception):
    pass


def test_a_rolled_back_page_leaves_nothing_behind_for_the_next(engine: Engine) -> None:
    # On PostgreSQL pages go through a per-session staging table: a page whose transaction rolled
    # back must neither be stored nor be picked up by the next page on the same connection.
    with pytest.raises(Abandon), engine.begin() as conn:
        upsert_page(conn, SPEC, [product(1), product(2)], T1)
        raise Abandon
    assert upsert(engine, [product(3)], T1) == (1, 0, 0)
    assert upsert(engine, [product(4), product(3, name="Renamed")], T2) == (1, 1, 0)
    with engine.connect() as conn:
        stored = conn.execute(select(Product.woo_id).order_by(Product.woo_id)).scalars().all()
    assert stored == [3, 4]
