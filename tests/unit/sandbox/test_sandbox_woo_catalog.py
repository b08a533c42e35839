"""The WooCommerce catalog: deterministic, shaped like the documentation samples, mutable like a shop."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from worker.sandbox.catalog_woo import VOLATILE_FIELDS, WooCatalog

SAMPLES = Path(__file__).parent / "samples"
ALL_BUT_TRASH = frozenset({"publish", "draft", "pending", "private", "future"})


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return data


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def catalog() -> WooCatalog:
    return WooCatalog(seed=7, size=1500)


def stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in VOLATILE_FIELDS}


def variation_ids(cat: WooCatalog, product_id: int, statuses: frozenset[str]) -> list[int]:
    return cat.query_variations(product_id, statuses=statuses, orderby="id", descending=False)


def test_same_seed_renders_identical_catalogs() -> None:
    # related_ids is random per read on a real store, so only the rest is reproducible.
    a, b = WooCatalog(seed=3, size=300), WooCatalog(seed=3, size=300)
    assert [stable(r) for r in a.expected_rows()] == [stable(r) for r in b.expected_rows()]


def test_other_seed_renders_another_catalog() -> None:
    a, b = WooCatalog(seed=3, size=300), WooCatalog(seed=4, size=300)
    assert [p["name"] for p in a.iter_products()] != [p["name"] for p in b.iter_products()]


def test_products_carry_every_key_of_the_documented_payloads(catalog: WooCatalog) -> None:
    by_type = {p["type"]: p for p in catalog.iter_products()}
    assert set(sample("woo_product_simple.json")) <= set(by_type["simple"])
    assert set(sample("woo_product_variable.json")) <= set(by_type["variable"])
    variation = next(catalog.iter_variations())
    assert set(sample("woo_variation.json")) <= set(variation) | {"status"}
    assert "images" not in variation and "image" in variation
    assert variation["parent_id"] > 0


def test_the_catalog_mixes_types_statuses_and_quirks(catalog: WooCatalog) -> None:
    products = list(catalog.iter_products())
    types = Counter(p["type"] for p in products)
    statuses = Counter(p["status"] for p in products)
    assert types["simple"] > types["variable"] > 0
    assert {"grouped", "external", "subscription"} <= set(types)
    assert {"publish", "draft", "private", "pending", "trash"} <= set(statuses)
    assert any(p["sku"] == "" for p in products)
    assert any(p["sale_price"] for p in products)
    assert any(p["stock_quantity"] is not None and p["stock_quantity"] < 0 for p in products)
    assert all(p["stock_quantity"] is None for p in products if not p["manage_stock"])
    assert any(any(not c.isascii() for c in p["name"]) for p in products)
    assert any(len({m["key"] for m in p["meta_data"]}) < len(p["meta_data"]) for p in products)
    known = set(sample("woo_product_simple.json")) | {"status"}
    assert any(set(p) - known for p in products), "some products carry plugin keys"


def test_prices_are_strings_with_varying_decimals(catalog: WooCatalog) -> None:
    rows = list(catalog.expected_rows())
    prices = [r[k] for r in rows for k in ("price", "regular_price", "sale_price")]
    assert all(isinstance(p, str) for p in prices)
    decimals = {len(p.partition(".")[2]) for p in prices if p}
    assert {0, 1, 2} <= decimals
    assert all(p["price"] == "" for p in catalog.iter_products() if p["type"] == "variable")


def test_variations_have_two_to_five_per_parent_and_quirky_stock(catalog: WooCatalog) -> None:
    # A trashed variable parent lists no variations (measured), so only live parents count here.
    variable = [p for p in catalog.iter_products() if p["type"] == "variable" and p["status"] != "trash"]
    assert all(2 <= len(p["variations"]) <= 5 for p in variable)
    variations = list(catalog.iter_variations())
    assert {True, False, "parent"} <= {v["manage_stock"] for v in variations}
    for v in variations:
        parent = catalog.get(v["parent_id"])
        if parent["status"] == "trash":
            assert v["status"] == "trash" and parent["variations"] == []
            continue
        assert v["id"] in parent["variations"]
        if v["manage_stock"] == "parent":
            assert v["stock_quantity"] == parent["stock_quantity"]
    inherited = [v for v in variations if v["sku"] and v["sku"] == catalog.get(v["parent_id"])["sku"]]
    assert inherited, "variations without their own SKU report the parent's"


def test_dates_are_site_local_three_hours_behind_gmt(catalog: WooCatalog) -> None:
    product = next(catalog.iter_products())
    local = datetime.fromisoformat(product["date_modified"])
    gmt = datetime.fromisoformat(product["date_modified_gmt"])
    assert gmt - local == timedelta(hours=3)
    assert not product["date_modified_gmt"].endswith("Z")


def test_a_hundred_thousand_products_generate() -> None:
    big = WooCatalog(seed=1, size=100_000)
    ids = big.query_products(statuses=ALL_BUT_TRASH, orderby="id", descending=False)
    assert len(big) == 100_000
    assert ids == sorted(ids)
    assert len(big.render_products(ids[-100:])) == 100


def test_change_bumps_date_modified_and_overrides_fields() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=50, clock=clock)
    pid = next(p["id"] for p in cat.iter_products() if p["type"] == "simple")
    changed = cat.change(pid, name="Renamed", regular_price="10", sale_price="")
    assert changed["name"] == "Renamed" and changed["price"] == "10"
    assert changed["date_modified_gmt"] == "2026-01-01T00:00:00"


def test_change_stock_does_not_bump_date_modified() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=50, clock=clock)
    before = next(cat.iter_products())
    after = cat.change_stock(before["id"], -3)
    assert after["stock_quantity"] == -3 and after["manage_stock"] is True
    assert after["stock_status"] == "onbackorder"
    assert after["date_modified_gmt"] == before["date_modified_gmt"]


def test_change_variation_bumps_the_parent_too() -> None:
    # WooCommerce 9.9.5 re-stamps the parent when a variation is saved through the REST API
    # (measured); this test used to assert the parent kept its date, as older releases did.
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=200, clock=clock)
    parent = next(p for p in cat.iter_products() if p["type"] == "variable" and p["status"] == "publish")
    vid = parent["variations"][0]
    variation = cat.change_variation(parent["id"], vid, regular_price="5.5")
    assert variation["price"] == "5.5"
    assert variation["date_modified_gmt"] == "2026-01-01T00:00:00"
    after = cat.get(parent["id"])
    assert (after["date_modified_gmt"], after["date_modified"]) == (
        "2026-01-01T00:00:00",
        "2025-12-31T21:00:00",
    )
    assert stable(after) == {
        **stable(parent),
        **{k: after[k] for k in ("date_modified", "date_modified_gmt")},
    }
    with pytest.raises(KeyError):
        cat.change_variation(parent["id"] + 100_000, vid, regular_price="1")


def test_trash_delete_bump_and_create() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=200, clock=clock)
    parent = next(p for p in cat.iter_products() if p["type"] == "variable")
    visible = cat.query_products(statuses=ALL_BUT_TRASH)
    cat.trash(parent["id"])
    assert parent["id"] not in cat.query_products(statuses=ALL_BUT_TRASH)
    assert parent["id"] in cat.query_products(statuses=frozenset({"trash"}))
    assert cat.get(parent["id"])["status"] == "trash"
    cat.delete(parent["id"])
    with pytest.raises(KeyError):
        cat.get(parent["id"])
    with pytest.raises(KeyError):
        cat.get(parent["variations"][0])
    clock.tick(60)
    created = cat.create_product(type="variable", name="Nova", variation_count=3)
    assert len(created["variations"]) == 3 and created["id"] > max(visible)
    assert created["date_created_gmt"] == "2026-01-01T00:01:00"
    bumped = cat.bump(visible[0], at=datetime(2026, 2, 1, tzinfo=UTC))
    assert bumped["date_modified_gmt"] == "2026-02-01T00:00:00"
    rows = list(cat.expected_rows())
    assert created["id"] in {r["id"] for r in rows}
    assert parent["id"] not in {r["id"] for r in rows}


def test_modified_filters_are_exclusive_and_cached_results_refresh() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=200, clock=clock)
    stamp = int(clock().timestamp())
    assert cat.query_products(statuses=ALL_BUT_TRASH, modified_after=stamp - 1) == []
    pid = cat.query_products(statuses=frozenset({"publish"}))[0]
    cat.bump(pid)
    assert cat.query_products(statuses=ALL_BUT_TRASH, modified_after=stamp - 1) == [pid]
    assert cat.query_products(statuses=ALL_BUT_TRASH, modified_after=stamp) == []
    assert pid not in cat.query_products(statuses=ALL_BUT_TRASH, modified_before=stamp)


def test_indexed_fields_cannot_be_overridden_silently() -> None:
    cat = WooCatalog(seed=1, size=20)
    pid = next(cat.iter_products())["id"]
    with pytest.raises(ValueError, match="date_modified"):
        cat.change(pid, date_modified_gmt="2020-01-01T00:00:00")
    with pytest.raises(ValueError, match="unknown status"):
        cat.change(pid, status="deleted")
    with pytest.raises(ValueError, match="unknown status"):
        cat.create_product(status="gone")
    assert len(cat) == 20


def test_order_by_title_follows_names_including_overrides() -> None:
    cat = WooCatalog(seed=1, size=60)
    first = cat.query_products(statuses=ALL_BUT_TRASH, orderby="title", descending=False)
    names = [cat.get(i)["name"].lower() for i in first]
    assert names == sorted(names)
    cat.change(first[-1], name="AAA first now")
    assert cat.query_products(statuses=ALL_BUT_TRASH, orderby="title", descending=False)[0] == first[-1]


def test_related_ids_differ_on_every_read_and_nothing_else_does() -> None:
    cat = WooCatalog(seed=1, size=200)
    pid = cat.query_products(statuses=frozenset({"publish"}))[0]
    reads = [cat.get(pid) for _ in range(6)]
    assert len({tuple(r["related_ids"]) for r in reads}) > 1
    assert all(stable(r) == stable(reads[0]) for r in reads)
    published = set(cat.query_products(statuses=frozenset({"publish"})))
    for read in reads:
        assert len(read["related_ids"]) == 5 and pid not in read["related_ids"]
        assert set(read["related_ids"]) <= published


def test_trashing_a_variable_product_trashes_its_variations_and_restore_brings_them_back() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=200, clock=clock)
    parent = next(p for p in cat.iter_products() if p["type"] == "variable" and p["status"] == "publish")
    pid, vids = parent["id"], parent["variations"]
    before = {v: cat.get(v)["status"] for v in vids}

    clock.tick(60)
    trashed = cat.trash(pid)
    assert trashed["status"] == "trash" and trashed["variations"] == []
    assert trashed["date_modified_gmt"] == "2026-01-01T00:01:00"
    assert trashed["slug"].endswith("__trashed")
    meta = {m["key"]: m["value"] for m in trashed["meta_data"]}
    assert meta["_wp_trash_meta_status"] == "publish"
    assert variation_ids(cat, pid, ALL_BUT_TRASH) == []
    assert variation_ids(cat, pid, frozenset({"trash"})) == sorted(vids)
    assert all(cat.get(v)["status"] == "trash" for v in vids)

    clock.tick(60)
    restored = cat.restore(pid)
    assert restored["status"] == "publish" and restored["variations"] == vids
    assert restored["date_modified_gmt"] == "2026-01-01T00:02:00"
    assert {v: cat.get(v)["status"] for v in vids} == before
    assert pid in cat.query_products(statuses=ALL_BUT_TRASH)


def test_restore_brings_back_the_status_before_trash() -> None:
    cat = WooCatalog(seed=1, size=50, clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
    pid = cat.query_products(statuses=frozenset({"publish"}))[0]
    cat.change(pid, status="private")
    cat.trash(pid)
    assert cat.restore(pid)["status"] == "private"


def test_variable_to_simple_deletes_the_variations() -> None:
    cat = WooCatalog(seed=1, size=200, clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
    parent = next(p for p in cat.iter_products() if p["type"] == "variable" and p["status"] == "publish")
    changed = cat.change(parent["id"], type="simple")
    assert changed["type"] == "simple" and changed["variations"] == []
    for status in (ALL_BUT_TRASH, frozenset({"trash"})):
        assert variation_ids(cat, parent["id"], status) == []
    for vid in parent["variations"]:
        with pytest.raises(KeyError):
            cat.get(vid)
    assert not set(parent["variations"]) & {v["id"] for v in cat.iter_variations()}


def test_backdated_product_gets_old_dates_and_a_new_higher_id() -> None:
    cat = WooCatalog(seed=1, size=100, clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
    highest = max(r["id"] for r in cat.expected_rows())
    old = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    created = cat.create_product(name="Imported", date_created=old, type="variable", variation_count=2)
    assert created["id"] > highest
    assert created["date_created_gmt"] == created["date_modified_gmt"] == "2024-05-06T07:08:09"
    assert created["date_created"] == created["date_modified"] == "2024-05-06T04:08:09"
    cutoff = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    assert created["id"] not in cat.query_products(statuses=ALL_BUT_TRASH, modified_after=cutoff)
    simple = cat.create_product(name="Later")
    again = cat.backdate(simple["id"], old)
    assert again["date_created_gmt"] == again["date_modified_gmt"] == "2024-05-06T07:08:09"


def test_stamps_follow_the_catalog_clock() -> None:
    clock = FakeClock(datetime(2030, 6, 1, tzinfo=UTC))
    cat = WooCatalog(seed=1, size=50, clock=clock)
    created = cat.create_product(name="Skewed")
    assert created["date_created_gmt"] == created["date_modified_gmt"] == "2030-06-01T00:00:00"
    clock.tick(5)
    assert cat.change(created["id"], name="Edited")["date_modified_gmt"] == "2030-06-01T00:00:05"
    clock.tick(5)
    assert cat.trash(created["id"])["date_modified_gmt"] == "2030-06-01T00:00:10"
    clock.tick(5)
    assert cat.restore(created["id"])["date_modified_gmt"] == "2030-06-01T00:00:15"
