"""WooCommerce products and variations -> ``products`` rows. Pure functions; raise ``InvalidRecord``.

Money stays exact (``Decimal`` from the string, never through float); ``""`` means no price. A
variation's ``manage_stock`` may be the string ``"parent"``: its stock is managed, by the parent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from worker.infra.errors import InvalidRecord

VARIATION_TYPE = "variation"


def parse_money(field: str, value: Any) -> Decimal | None:
    """``""``/None -> None; a numeric string or int -> exact Decimal; anything else is invalid."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        msg = f"{field}: expected a decimal string, got {type(value).__name__}"
        raise InvalidRecord(msg)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        msg = f"{field}: {str(value)[:40]!r} is not a number"
        raise InvalidRecord(msg) from None
    if not amount.is_finite():
        msg = f"{field}: {value!r} is not a finite amount"
        raise InvalidRecord(msg)
    return amount


def parse_stock_quantity(value: Any) -> int | None:
    """An int (negative on backorders) or None when stock is not managed."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    msg = f"stock_quantity: {str(value)[:40]!r} is not an integer"
    raise InvalidRecord(msg)


def parse_manage_stock(value: Any) -> tuple[bool, bool]:
    """``(manage_stock, stock_managed_by_parent)`` from ``true``, ``false`` or ``"parent"``."""
    if value == "parent":
        return True, True
    if isinstance(value, bool):
        return value, False
    if value is None:
        return False, False
    msg = f"manage_stock: unexpected value {str(value)[:40]!r}"
    raise InvalidRecord(msg)


def parse_gmt(field: str, value: Any) -> dt.datetime | None:
    """WooCommerce's zone-less ``*_gmt`` timestamps, as aware UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        msg = f"{field}: expected a timestamp string, got {type(value).__name__}"
        raise InvalidRecord(msg)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        msg = f"{field}: {value[:40]!r} is not a timestamp"
        raise InvalidRecord(msg) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def record_id(raw: Mapping[str, Any]) -> int:
    """The record's positive integer id; a record without one cannot be mirrored."""
    value = raw.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        msg = f"id: missing or not a positive integer ({str(value)[:40]!r})"
        raise InvalidRecord(msg)
    return value


def _text(raw: Mapping[str, Any], field: str, *, required: bool = False) -> str | None:
    value = raw.get(field)
    if value is None or (value == "" and not required):
        if required:
            msg = f"{field}: missing"
            raise InvalidRecord(msg)
        return None
    if not isinstance(value, str):
        msg = f"{field}: expected text, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def _common(raw: Mapping[str, Any]) -> dict[str, Any]:
    manage_stock, by_parent = parse_manage_stock(raw.get("manage_stock"))
    return {
        "woo_id": record_id(raw),
        "status": _text(raw, "status", required=True),
        # "" and absent mean the same; variations without their own SKU repeat the parent's.
        "sku": _text(raw, "sku"),
        "slug": _text(raw, "slug"),
        "price": parse_money("price", raw.get("price")),
        "regular_price": parse_money("regular_price", raw.get("regular_price")),
        "sale_price": parse_money("sale_price", raw.get("sale_price")),
        "manage_stock": manage_stock,
        "stock_managed_by_parent": by_parent,
        "stock_quantity": parse_stock_quantity(raw.get("stock_quantity")),
        "stock_status": _text(raw, "stock_status"),
        "date_created_gmt": parse_gmt("date_created_gmt", raw.get("date_created_gmt")),
        "date_modified_gmt": parse_gmt("date_modified_gmt", raw.get("date_modified_gmt")),
        "raw": dict(raw),
    }


def normalize_product(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A product row; an unknown ``type`` (plugins add ``subscription``, ``bundle``) is kept as-is."""
    row = _common(raw)
    row["parent_woo_id"] = None
    row["type"] = _text(raw, "type", required=True)
    row["name"] = _text(raw, "name", required=True)
    return row


def normalize_variation(raw: Mapping[str, Any], parent_id: int) -> dict[str, Any]:
    """A variation row under ``parent_id`` (variations have no ``type`` and may have no ``name``)."""
    row = _common(raw)
    declared = raw.get("parent_id")
    if declared not in (None, 0, parent_id):
        msg = f"parent_id: {declared!r} but listed under product {parent_id}"
        raise InvalidRecord(msg)
    row["parent_woo_id"] = parent_id
    row["type"] = VARIATION_TYPE
    row["name"] = _text(raw, "name") or ""
    return row
