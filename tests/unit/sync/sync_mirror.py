"""Reading the mirror back and comparing it with an upstream, field by field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, text

from models import Product, Supplier, SyncRun, SyncState
from worker.kinds.odoo.values import parse_odoo_datetime


def rows(engine: Engine, model: Any, key: str) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return {r[key]: dict(r) for r in conn.execute(select(model.__table__)).mappings()}


def products(engine: Engine) -> dict[int, dict[str, Any]]:
    return rows(engine, Product, "woo_id")


def suppliers(engine: Engine) -> dict[int, dict[str, Any]]:
    return rows(engine, Supplier, "odoo_id")


def runs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(SyncRun.__table__).order_by(SyncRun.id)).mappings()]


def state(engine: Engine, source: str) -> dict[str, Any]:
    with engine.connect() as conn:
        query = select(SyncState.__table__).where(SyncState.source == source)
        return dict(conn.execute(query).mappings().one())


def money(value: Any) -> Decimal | None:
    return None if value in ("", None) else Decimal(str(value))


def assert_product_matches(row: dict[str, Any], raw: dict[str, Any], parent: int | None) -> None:
    assert row["parent_woo_id"] == parent
    assert row["name"] == (raw.get("name") or "")
    assert row["type"] == (raw["type"] if parent is None else "variation")
    assert row["status"] == raw["status"]
    assert row["sku"] == (raw["sku"] or None)
    for field in ("price", "regular_price", "sale_price"):
        assert row[field] == money(raw[field]), field
    assert row["manage_stock"] == (raw["manage_stock"] in (True, "parent"))
    assert row["stock_managed_by_parent"] == (raw["manage_stock"] == "parent")
    assert row["stock_quantity"] == raw["stock_quantity"]
    assert row["stock_status"] == raw["stock_status"]
    assert row["date_modified_gmt"].strftime("%Y-%m-%dT%H:%M:%S") == raw["date_modified_gmt"]
    assert row["raw"] == raw
    assert row["deleted_at"] is None


def assert_woo_mirror(engine: Engine, woo: Any, *, deleted: frozenset[int] = frozenset()) -> None:
    """Every upstream product and variation mirrored exactly; every other row marked deleted."""
    mirror = products(engine)
    expected: dict[int, tuple[dict[str, Any], int | None]] = {
        pid: (raw, None) for pid, raw in woo.products.items()
    }
    for parent, variations in woo.variations.items():
        if parent in woo.products:
            expected.update({vid: (raw, parent) for vid, raw in variations.items()})
    for key, (raw, parent) in expected.items():
        assert key in mirror, f"{key} missing from the mirror"
        assert_product_matches(mirror[key], raw, parent)
    gone = {k for k in mirror if k not in expected}
    assert gone == set(deleted)
    assert all(mirror[k]["deleted_at"] is not None for k in gone)


def assert_odoo_mirror(engine: Engine, odoo: Any, *, deleted: frozenset[int] = frozenset()) -> None:
    mirror = suppliers(engine)
    expected = {pid: raw for pid, raw in odoo.partners.items() if raw["supplier_rank"] > 0}
    for pid, raw in expected.items():
        row = mirror[pid]
        assert row["name"] == raw["name"]
        assert row["email"] == (raw["email"] or None)
        assert row["active"] is raw["active"]
        assert row["supplier_rank"] == raw["supplier_rank"]
        assert row["country_code"] == (raw["country_code"] or None)
        assert row["odoo_write_date"] == parse_odoo_datetime(raw["write_date"])
        assert row["raw"] == raw
        assert row["deleted_at"] is None
    gone = {k for k in mirror if k not in expected}
    assert gone == set(deleted)
    assert all(mirror[k]["deleted_at"] is not None for k in gone)


def row_versions(engine: Engine, table: str) -> dict[int, Any]:
    """PostgreSQL row versions (xmin); unchanged when a run wrote nothing."""
    with engine.connect() as conn:
        return dict(conn.execute(text(f"SELECT id, xmin::text FROM {table}")).all())
