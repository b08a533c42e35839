"""Responses of a real WooCommerce 9.9.5 shop: they normalise, and a second read rewrites nothing.

The shop answered the same product twice with two different ``related_ids`` lists; the first
version hashed them and rewrote 301 of 506 rows on every no-op full run.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from worker.kinds.woocommerce.normalize import normalize_product, normalize_variation
from worker.sync.hashing import content_hash

REAL = Path(__file__).parent / "samples" / "real"


def real(name: str) -> Any:
    return json.loads((REAL / name).read_text())


def rows_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        normalize_variation(r, parent_id=r["parent_id"]) if "parent_id" in r and "type" not in r
        else normalize_product(r)
        for r in records
    ]  # fmt: skip


def reread(record: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    """The same unchanged record as a second request returns it: only related_ids differ."""
    if "related_ids" not in record:
        return record
    return {**record, "related_ids": rnd.sample(range(1, 600), len(record["related_ids"]))}


@pytest.mark.parametrize(
    "name",
    [
        "woo_real_v9_products_page.json",
        "woo_real_v9_trash_list.json",
        "woo_real_v9_variations_list.json",
    ],
)
def test_a_second_read_of_a_real_listing_hashes_the_same(name: str) -> None:
    records = real(name)
    rnd = random.Random(1)
    first = [content_hash(r) for r in rows_of(records)]
    second = [content_hash(r) for r in rows_of([reread(r, rnd) for r in records])]
    assert first == second


def test_the_measured_related_ids_pair_hashes_the_same() -> None:
    one, two = (
        json.loads(line) for line in (REAL / "woo_real_v9_related_ids_twice.txt").read_text().splitlines()
    )
    assert one["related_ids"] != two["related_ids"]
    product = real("woo_real_v9_product_variable.json")
    hashes = {
        content_hash(normalize_product({**product, "related_ids": r["related_ids"]})) for r in (one, two)
    }
    assert len(hashes) == 1


def test_a_real_edit_still_changes_the_hash() -> None:
    product = real("woo_real_v9_product_variable.json")
    edited = {**product, "description": product["description"] + "<p>New</p>\n"}
    assert content_hash(normalize_product(product)) != content_hash(normalize_product(edited))
