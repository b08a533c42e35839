"""Upgrading a single-source database to configurable sources keeps every row, cursor and run."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from worker.infra.db import downgrade_database, make_engine, upgrade_database

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
WATERMARK = dt.datetime(2026, 11, 30, 8, 15, 42, tzinfo=dt.UTC)


def product(woo_id: int, parent: int | None = None) -> dict[str, Any]:
    return {"woo_id": woo_id, "parent_woo_id": parent, "type": "simple", "status": "publish",
            "name": f"P{woo_id}", "manage_stock": False, "stock_managed_by_parent": False,
            "raw": f'{{"id": {woo_id}}}', "content_hash": f"h{woo_id}", "first_synced_at": T0,
            "last_synced_at": T0}  # fmt: skip


def seed_single_source_database(engine: Engine) -> None:
    """What a deployment mirroring one shop and one Odoo database holds at revision 0002."""
    with engine.begin() as conn:
        conn.execute(
            text("""INSERT INTO products (woo_id, parent_woo_id, type, status, name, manage_stock,
                    stock_managed_by_parent, raw, content_hash, first_synced_at, last_synced_at)
                    VALUES (:woo_id, :parent_woo_id, :type, :status, :name, :manage_stock,
                    :stock_managed_by_parent, :raw, :content_hash, :first_synced_at, :last_synced_at)"""),
            [product(10), product(11, parent=10), product(12)],
        )
        conn.execute(
            text("""INSERT INTO suppliers (odoo_id, name, is_company, active, supplier_rank, raw,
                    content_hash, first_synced_at, last_synced_at)
                    VALUES (7, 'Acme', true, true, 1, '{}', 'h7', :t, :t)"""),
            {"t": T0},
        )
        conn.execute(
            text("""INSERT INTO sync_state (source, watermark, checkpoint, last_run_id, last_status,
                    fence, requests) VALUES ('woocommerce-products', :w, '{"incremental": {"page": 3}}',
                    2, 'interrupted', 5, 9)"""),
            {"w": WATERMARK},
        )
        conn.execute(
            text("""INSERT INTO sync_runs (source, mode, status, started_at, fetched, inserted, updated,
                    unchanged, skipped, failed, marked_deleted, fence, serves_through)
                    VALUES ('woocommerce-products', 'full', 'succeeded', :t, 3, 3, 0, 0, 0, 0, 0, 4, 8),
                    ('woocommerce-products', 'incremental', 'interrupted', :t, 1, 0, 1, 0, 0, 0, 0, 5, 9)"""),
            {"t": T0},
        )


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_an_existing_single_source_database_keeps_every_row_cursor_and_run(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("scratch_pg_url" if backend == "postgresql" else "sqlite_url")
    engine = make_engine(url)
    try:
        upgrade_database(url, "0002")
        seed_single_source_database(engine)
        upgrade_database(url)
        with engine.connect() as conn:
            products = conn.execute(text("SELECT source, woo_id, parent_woo_id, content_hash FROM products "
                                         "ORDER BY woo_id")).all()  # fmt: skip
            assert [tuple(p) for p in products] == [
                ("woocommerce-products", 10, None, "h10"),
                ("woocommerce-products", 11, 10, "h11"),
                ("woocommerce-products", 12, None, "h12"),
            ]
            assert conn.execute(text("SELECT source, odoo_id FROM suppliers")).all() == [
                ("odoo-suppliers", 7)
            ]
            state = conn.execute(text("SELECT watermark, checkpoint, last_run_id, fence, requests "
                                      "FROM sync_state")).one()  # fmt: skip
            watermark = state.watermark if isinstance(state.watermark, dt.datetime) else \
                dt.datetime.fromisoformat(str(state.watermark))  # fmt: skip
            assert watermark.replace(tzinfo=dt.UTC) == WATERMARK.replace(tzinfo=dt.UTC)
            checkpoint = (
                state.checkpoint
                if isinstance(state.checkpoint, dict)
                else __import__("json").loads(state.checkpoint)
            )
            assert checkpoint == {"incremental": {"page": 3}}
            assert (state.last_run_id, state.fence, state.requests) == (2, 5, 9)
            runs = conn.execute(
                text("SELECT source, mode, status, serves_through FROM sync_runs ORDER BY id")
            )
            assert [tuple(r) for r in runs] == [
                ("woocommerce-products", "full", "succeeded", 8),
                ("woocommerce-products", "incremental", "interrupted", 9),
            ]
        # The same upstream id in another shop is another row; in the same shop it is still one.
        with engine.begin() as conn:
            insert_other_shops_product(conn, "B10")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            insert_other_shops_product(conn, "duplicate")
        # Going back would fold shop-b's rows into the environment's source: refused, nothing lost.
        with pytest.raises(RuntimeError, match="cannot downgrade: products holds rows of sources other than"):
            downgrade_database(url, "0002")
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM products WHERE source = 'shop-b'")).scalar_one()
        assert kept == 1
    finally:
        engine.dispose()


def insert_other_shops_product(conn: Any, name: str) -> None:
    conn.execute(
        text("""INSERT INTO products (source, woo_id, type, status, name, manage_stock,
                stock_managed_by_parent, raw, content_hash, first_synced_at, last_synced_at)
                VALUES ('shop-b', 10, 'simple', 'publish', :name, false, false, '{}', 'hb', :t, :t)"""),
        {"name": name, "t": T0},
    )
