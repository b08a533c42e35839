"""Normalisers, table-tested on the documentation samples and on the payload quirks of UPSTREAM.md."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sync_fakes import sample

from worker.infra.errors import InvalidRecord
from worker.kinds.odoo.normalize import normalize_supplier
from worker.kinds.woocommerce.normalize import (
    normalize_product,
    normalize_variation,
    parse_manage_stock,
    parse_money,
)


def test_simple_product_sample() -> None:
    raw = sample("woo_product_simple.json")
    row = normalize_product(raw)
    assert row["woo_id"] == 794
    assert row["parent_woo_id"] is None
    assert (row["type"], row["status"], row["name"]) == ("simple", "publish", "Premium Quality")
    assert row["sku"] is None  # "" means no SKU
    assert row["price"] == Decimal("21.99") and isinstance(row["price"], Decimal)
    assert row["sale_price"] is None
    assert (row["manage_stock"], row["stock_managed_by_parent"], row["stock_quantity"]) == (
        False,
        False,
        None,
    )
    assert row["date_modified_gmt"] == dt.datetime(2017, 3, 23, 20, 1, 14, tzinfo=dt.UTC)
    assert row["raw"] == raw


def test_variable_parent_has_no_price() -> None:
    row = normalize_product(sample("woo_product_variable.json"))
    assert row["type"] == "variable"
    assert row["price"] is None and row["regular_price"] is None


def test_variation_sample_gets_parent_and_type() -> None:
    raw = sample("woo_variation.json")
    row = normalize_variation(raw, parent_id=22)
    assert (row["woo_id"], row["parent_woo_id"], row["type"], row["name"]) == (732, 22, "variation", "")
    assert row["price"] == Decimal("9.00")


def test_every_listed_sample_normalises() -> None:
    rows = [normalize_product(r) for r in sample("woo_products_list.json")]
    assert [r["woo_id"] for r in rows] == [799, 794]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), (None, None), ("90", Decimal("90")), ("0.01", Decimal("0.01")),
     ("19.999", Decimal("19.999")), (" 5.5 ", Decimal("5.5")), (12, Decimal("12"))],
    ids=["empty", "null", "no-decimals", "one-cent", "three-decimals", "padded", "json-int"],
)  # fmt: skip
def test_money(value: Any, expected: Decimal | None) -> None:
    assert parse_money("price", value) == expected


@pytest.mark.parametrize(
    "value", ["free", "1,50", "NaN", "Infinity", True, 1.5, [], {}],
    ids=["word", "comma", "nan", "inf", "bool", "float", "list", "dict"],
)  # fmt: skip
def test_money_rejects(value: Any) -> None:
    with pytest.raises(InvalidRecord, match="price"):
        parse_money("price", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, (True, False)), (False, (False, False)), ("parent", (True, True)), (None, (False, False))],
    ids=["managed", "unmanaged", "parent", "absent"],
)
def test_manage_stock(value: Any, expected: tuple[bool, bool]) -> None:
    assert parse_manage_stock(value) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "id"),
        ({"id": "794"}, "id"),
        ({"id": 0}, "id"),
        ({"price": "abc"}, "price"),
        ({"regular_price": "1.2.3"}, "regular_price"),
        ({"stock_quantity": "lots"}, "stock_quantity"),
        ({"manage_stock": "sometimes"}, "manage_stock"),
        ({"date_modified_gmt": "yesterday"}, "date_modified_gmt"),
        ({"status": None}, "status"),
        ({"name": 42}, "name"),
        ({"type": None}, "type"),
    ],
    ids=["no-id", "string-id", "zero-id", "bad-price", "bad-regular", "bad-stock", "bad-manage", "bad-date",
         "no-status", "numeric-name", "no-type"],
)  # fmt: skip
def test_invalid_products(change: dict[str, Any], reason: str) -> None:
    raw = {**sample("woo_product_simple.json"), **change}
    with pytest.raises(InvalidRecord, match=reason):
        normalize_product(raw)


def test_product_quirks_are_kept() -> None:
    quirks = {"type": "subscription", "stock_quantity": -3, "manage_stock": True, "brands": [{"id": 1}],
              "meta_data": [{"key": "k", "value": 1}, {"key": "k", "value": None}]}  # fmt: skip
    raw = {**sample("woo_product_simple.json"), **quirks}
    row = normalize_product(raw)
    assert row["type"] == "subscription"
    assert row["stock_quantity"] == -3  # backorders
    assert row["raw"]["brands"] == [{"id": 1}]


def test_variation_inheriting_parent_stock_and_sku() -> None:
    raw = {**sample("woo_variation.json"), "manage_stock": "parent", "stock_quantity": 7, "sku": "PARENT-SKU"}
    row = normalize_variation(raw, parent_id=22)
    assert (row["manage_stock"], row["stock_managed_by_parent"], row["stock_quantity"]) == (True, True, 7)
    assert row["sku"] == "PARENT-SKU"


def test_variation_listed_under_the_wrong_parent_is_invalid() -> None:
    with pytest.raises(InvalidRecord, match="parent_id"):
        normalize_variation({**sample("woo_variation.json"), "parent_id": 5}, parent_id=22)


ODOO_FULL = {
    "id": 7, "name": "Agrolait", "email": False, "phone": "+32 10 588 558", "vat": "BE0477472701",
    "ref": False, "street": "69 rue de Namur", "street2": False, "city": "Wavre", "zip": "1300",
    "state_id": [5, "Brabant wallon"], "country_id": [21, "Belgium"], "country_code": "BE",
    "is_company": True, "parent_id": False, "active": False, "website": False, "supplier_rank": 3,
    "write_date": "2026-01-02 03:04:05",
}  # fmt: skip


def test_odoo_partner_sample() -> None:
    rows = [normalize_supplier(r) for r in sample("odoo_partner_search_read.json")]
    assert [(r["odoo_id"], r["name"]) for r in rows][:2] == [(7, "Agrolait"), (18, "Axelor")]
    assert all(r["active"] is True and r["supplier_rank"] == 0 for r in rows)  # absent fields: defaults


def test_odoo_values() -> None:
    row = normalize_supplier(ODOO_FULL)
    assert row["email"] is None and row["ref"] is None  # False -> None for non-boolean fields
    assert row["active"] is False and row["is_company"] is True  # real booleans stay booleans
    assert row["state_name"] == "Brabant wallon"
    assert row["country_code"] == "BE"
    assert row["parent_odoo_id"] is None
    assert row["supplier_rank"] == 3
    assert row["odoo_write_date"] == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_odoo_many2one_parent() -> None:
    assert normalize_supplier({**ODOO_FULL, "parent_id": [3, "Holding"]})["parent_odoo_id"] == 3


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"id": False}, "id"), ({"active": "yes"}, "active"), ({"write_date": "soon"}, "write_date"),
     ({"state_id": "Brabant"}, "state_id"), ({"supplier_rank": "many"}, "supplier_rank"),
     ({"email": 5}, "email"), ({"name": ["x"]}, "name")],
    ids=["no-id", "bad-bool", "bad-date", "bad-many2one", "bad-rank", "bad-text", "bad-name"],
)  # fmt: skip
def test_invalid_suppliers(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        normalize_supplier({**ODOO_FULL, **change})
