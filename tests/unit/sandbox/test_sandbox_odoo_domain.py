"""Odoo domain evaluation: Polish-notation operators and the ORM's treatment of empty values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from worker.sandbox.odoo_domain import InvalidDomain, compile_domain, mentions

FIELDS = {"id": "integer", "name": "char", "email": "char", "active": "boolean",
          "supplier_rank": "integer", "write_date": "datetime", "country_id": "many2one"}  # fmt: skip
M2O = frozenset({"country_id"})
ROW: dict[str, Any] = {
    "id": 7,
    "name": "Agrolait Trading",
    "email": False,
    "active": True,
    "supplier_rank": 2,
    "write_date": "2024-05-01 10:00:00",
    "country_id": [21, "Belgium"],
}


def matches(domain: list[Any], row: dict[str, Any] = ROW) -> bool:
    return compile_domain(domain, FIELDS, M2O)(row)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ([], True),
        ([("id", "=", 7)], True),
        ([("id", "!=", 7)], False),
        ([("supplier_rank", ">", 0)], True),
        ([("supplier_rank", ">=", 3)], False),
        ([("supplier_rank", "<", 3), ("supplier_rank", "<=", 2)], True),
        ([("id", "in", [1, 7])], True),
        ([("id", "not in", [1, 7])], False),
        ([("name", "ilike", "agro")], True),
        ([("name", "not ilike", "agro")], False),
        ([("email", "=", False)], True),
        ([("email", "!=", False)], False),
        ([("email", "ilike", "x")], False),
        ([("email", "not ilike", "x")], True),
        ([("email", "!=", "a@b.c")], True),
        ([("email", "not in", ["a@b.c"])], True),
        ([("email", ">", "a")], False),
        ([("active", "in", [True, False])], True),
        ([("country_id", "=", 21)], True),
        ([("country_id", "in", [76, 105])], False),
        ([("country_id", "ilike", "belg")], True),
        ([("write_date", ">", "2024-05-01 09:59:59")], True),
        ([("write_date", ">", datetime(2024, 5, 1, 10, 0, 0))], False),
        (["|", ("id", "=", 1), ("id", "=", 7)], True),
        (["&", ("id", "=", 1), ("id", "=", 7)], False),
        (["!", ("id", "=", 7)], False),
        (["!", "|", ("id", "=", 1), ("id", "=", 2)], True),
        # The keyset page condition a sync sends.
        (["|", ("write_date", ">", "2024-05-01 10:00:00"), "&",
          ("write_date", "=", "2024-05-01 10:00:00"), ("id", ">", 6)], True),
        (["|", ("write_date", ">", "2024-05-01 10:00:00"), "&",
          ("write_date", "=", "2024-05-01 10:00:00"), ("id", ">", 7)], False),
        ([(1, "=", 1)], True),
        ([(0, "=", 1)], False),
    ],
)  # fmt: skip
def test_domain(domain: list[Any], expected: bool) -> None:
    assert matches(domain) is expected


@pytest.mark.parametrize(
    "domain",
    [[("mobile", "=", "x")], [("id", "~", 1)], ["|", ("id", "=", 1)], ["&"], ["bogus"]],
    ids=["unknown-field", "unknown-operator", "missing-operand", "lonely-operator", "not-a-leaf"],
)
def test_invalid_domains_are_rejected(domain: list[Any]) -> None:
    with pytest.raises(InvalidDomain):
        compile_domain(domain, FIELDS, M2O)


def test_mentions_finds_a_leaf_on_a_field() -> None:
    assert mentions(["|", ("active", "=", True), ("id", "=", 1)], "active")
    assert not mentions([("id", "=", 1)], "active")
