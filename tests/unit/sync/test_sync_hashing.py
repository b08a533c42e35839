"""Content hashes decide whether a row is rewritten; they must be stable and see real changes only."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal

from sync_fakes import sample

from worker.sync.hashing import content_hash
from worker.sync.normalize_woo import normalize_product


def test_stable_across_key_order_and_processes() -> None:
    row = normalize_product(sample("woo_product_simple.json"))
    shuffled = dict(reversed(list(row.items())))
    assert content_hash(row) == content_hash(shuffled)
    code = (
        "import json,sys; from worker.sync.hashing import content_hash; "
        "from worker.sync.normalize_woo import normalize_product; "
        "print(content_hash(normalize_product(json.load(sys.stdin))))"
    )
    raw = (sample.__globals__["SAMPLES"] / "woo_product_simple.json").read_text()
    other = subprocess.run(
        [sys.executable, "-c", code], input=raw, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == content_hash(row)


def test_reformatted_price_is_not_a_change() -> None:
    base = {"woo_id": 1, "price": Decimal("90")}
    assert content_hash(base) == content_hash({**base, "price": Decimal("90.00")})
    assert content_hash(base) != content_hash({**base, "price": Decimal("90.01")})


def test_bookkeeping_and_links_do_not_count() -> None:
    row = {"woo_id": 1, "raw": {"id": 1, "_links": {"self": "a"}}, "first_synced_at": dt.datetime.now(dt.UTC)}
    moved = {**row, "raw": {"id": 1, "_links": {"self": "b"}}, "first_synced_at": None, "last_synced_at": 1}
    assert content_hash(row) == content_hash(moved)


def test_raw_changes_count() -> None:
    row = normalize_product(sample("woo_product_simple.json"))
    raw = {**row["raw"], "meta_data": [{"key": "_supplier_ref", "value": "X"}]}
    assert content_hash(row) != content_hash({**row, "raw": raw})


def test_hash_of_a_known_record_never_changes() -> None:
    # Pinned: a changed hash function would rewrite every stored row on the next run.
    row = normalize_product(sample("woo_product_variable.json"))
    assert content_hash(row) == "f4b5c871d5c0c3c272fbc608f850e2db14a93206cfb1d49c4419a07b4a4dfc3e"
