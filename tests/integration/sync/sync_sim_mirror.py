"""Comparing the mirror in PostgreSQL with a simulator's catalog, field by field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, text

from models import Product, Supplier
from worker.kinds.odoo.values import parse_odoo_datetime


def table_rows(engine: Engine, model: Any, key: str, source: str | None = None) -> dict[int, dict[str, Any]]:
    """The mirror's rows by upstream id: of one source, or of all (a test with a single source)."""
    query = select(model.__table__)
    if source is not None:
        query = query.where(model.__table__.c.source == source)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    if source is None:
        assert len({r["source"] for r in rows}) <= 1, "rows of several sources: name the one to compare"
    return {r[key]: r for r in rows}


def versions(engine: Engine, table: str) -> list[tuple[int, str]]:
    """Row versions (xmin): they move on every write, even one that changes nothing."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT id, xmin::text FROM {table} ORDER BY id"))]  # type: ignore[misc]


def money(value: Any) -> Decimal | None:
    return None if value in ("", None) else Decimal(str(value))


def _stable(raw: dict[str, Any]) -> dict[str, Any]:
    # related_ids are drawn anew on every read upstream: no mirror can equal them.
    return {k: v for k, v in raw.items() if k != "related_ids"}


def product_mismatches(row: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    variation = bool(raw.get("parent_id")) and "type" not in raw
    expected = {
        "parent_woo_id": raw["parent_id"] if variation else None,
        "type": "variation" if variation else raw["type"],
        "name": raw.get("name") or "",
        "status": raw["status"],
        "sku": raw["sku"] or None,
        "slug": raw.get("slug") or None,
        "price": money(raw["price"]),
        "regular_price": money(raw["regular_price"]),
        "sale_price": money(raw["sale_price"]),
        "manage_stock": raw["manage_stock"] in (True, "parent"),
        "stock_managed_by_parent": raw["manage_stock"] == "parent",
        "stock_quantity": raw["stock_quantity"],
        "stock_status": raw["stock_status"],
        "deleted_at": None,
        "raw": _stable(raw),
    }
    actual = {**row, "raw": _stable(row["raw"])}
    bad = [f"{k}: {actual[k]!r} != {v!r}" for k, v in expected.items() if actual[k] != v]
    if row["date_modified_gmt"].strftime("%Y-%m-%dT%H:%M:%S") != raw["date_modified_gmt"]:
        bad.append("date_modified_gmt")
    return bad


def assert_woo_mirror(engine: Engine, catalog: Any, source: str | None = None) -> None:
    """Every catalog record (trashed included) mirrored exactly; every other row marked deleted."""
    mirror = table_rows(engine, Product, "woo_id", source)
    expected = {int(raw["id"]): raw for raw in catalog.expected_rows()}
    problems = {k: product_mismatches(mirror[k], raw) for k, raw in expected.items() if k in mirror}
    assert {k: p for k, p in problems.items() if p} == {}
    assert set(expected) - set(mirror) == set()
    assert [k for k in set(mirror) - set(expected) if mirror[k]["deleted_at"] is None] == []


def assert_odoo_mirror(engine: Engine, catalog: Any, fields: set[str], source: str | None = None) -> None:
    """Every supplier mirrored field by field (over the fields the client reads); others marked deleted."""
    mirror = table_rows(engine, Supplier, "odoo_id", source)
    expected = {p["id"]: p for p in catalog.suppliers()}
    for pid, partner in expected.items():
        row = mirror[pid]
        assert row["raw"] == {k: v for k, v in partner.items() if k in fields or k == "id"}
        assert row["name"] == partner["name"]
        assert row["email"] == (partner["email"] or None)
        assert row["city"] == (partner["city"] or None)
        assert row["active"] is partner["active"]
        assert row["is_company"] is partner["is_company"]
        assert row["supplier_rank"] == partner["supplier_rank"]
        assert row["state_name"] == (partner["state_id"][1] if partner["state_id"] else None)
        assert row["parent_odoo_id"] == (partner["parent_id"][0] if partner["parent_id"] else None)
        assert row["odoo_write_date"] == parse_odoo_datetime(partner["write_date"])
        assert row["deleted_at"] is None
    assert [k for k in set(mirror) - set(expected) if mirror[k]["deleted_at"] is None] == []
