"""The WooCommerce simulator over real sockets: paging, filters, auth, routes."""

from __future__ import annotations

import email.utils
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from worker.sandbox import WooCommerceSimulator

SAMPLES = Path(__file__).parents[2] / "unit" / "sandbox" / "samples"


@pytest.fixture(scope="module")
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=4, size=1200) as sim:
        yield sim


@pytest.fixture
def session(woo: WooCommerceSimulator) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.auth = (woo.consumer_key, woo.consumer_secret)
        yield s


def get(session: requests.Session, woo: WooCommerceSimulator, path: str, **params: Any) -> requests.Response:
    return session.get(woo.api_url + path, params=params, timeout=10)


def walk(session: requests.Session, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Follow rel="next" links to the last page, as a client would."""
    rows: list[dict[str, Any]] = []
    response = session.get(url, params=params, timeout=10)
    while True:
        assert response.status_code == 200
        rows += response.json()
        if "next" not in response.links:
            return rows
        response = session.get(response.links["next"]["url"], timeout=10)


def test_keys_look_real(woo: WooCommerceSimulator) -> None:
    for key, prefix in ((woo.consumer_key, "ck_"), (woo.consumer_secret, "cs_")):
        assert key.startswith(prefix) and len(key) == 43
        int(key[3:], 16)


def test_paging_by_id_reaches_every_visible_product(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    rows = walk(session, woo.api_url + "/products", {"per_page": 100, "orderby": "id", "order": "asc"})
    expected = [p["id"] for p in woo.catalog.iter_products() if p["status"] != "trash"]
    assert [r["id"] for r in rows] == expected


def test_paging_headers_and_past_the_end(woo: WooCommerceSimulator, session: requests.Session) -> None:
    first = get(session, woo, "/products", per_page=100)
    total = int(first.headers["X-WP-Total"])
    pages = int(first.headers["X-WP-TotalPages"])
    assert first.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert pages == -(-total // 100) and "prev" not in first.links
    last = get(session, woo, "/products", per_page=100, page=pages)
    assert len(last.json()) == total - 100 * (pages - 1)
    assert "next" not in last.links and "page=" in last.links["prev"]["url"]
    beyond = get(session, woo, "/products", per_page=100, page=pages + 1)
    assert beyond.status_code == 200 and beyond.json() == []
    assert beyond.headers["X-WP-Total"] == str(total)


def test_default_order_is_date_desc(woo: WooCommerceSimulator, session: requests.Session) -> None:
    rows = get(session, woo, "/products", per_page=50).json()
    created = [r["date_created_gmt"] for r in rows]
    assert created == sorted(created, reverse=True)


def test_link_echoes_query_parameters_including_query_keys(woo: WooCommerceSimulator) -> None:
    response = requests.get(
        woo.api_url + "/products",
        params={
            "consumer_key": woo.consumer_key,
            "consumer_secret": woo.consumer_secret,
            "per_page": 5,
            "status": "publish",
        },
        timeout=10,
    )
    assert response.status_code == 200
    nxt = response.links["next"]["url"]
    assert "consumer_key=ck_" in nxt and "status=publish" in nxt and "page=2" in nxt


def test_per_page_over_100_is_rest_invalid_param(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    response = get(session, woo, "/products", per_page=101)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "rest_invalid_param" and body["data"]["params"]["per_page"]


@pytest.mark.parametrize("auth", [None, ("ck_wrong", "cs_wrong")], ids=["missing", "wrong"])
def test_bad_credentials_get_401_cannot_view(woo: WooCommerceSimulator, auth: Any) -> None:
    response = requests.get(woo.api_url + "/products", auth=auth, timeout=10)
    assert response.status_code == 401
    assert response.json() == {
        "code": "woocommerce_rest_cannot_view",
        "message": "Sorry, you cannot list resources.",
        "data": {"status": 401},
    }


def test_unknown_route_is_rest_no_route(woo: WooCommerceSimulator, session: requests.Session) -> None:
    response = get(session, woo, "/orders")
    assert response.status_code == 404
    assert response.json() == json.loads((SAMPLES / "woo_error_404_rest_no_route.json").read_text())


def test_status_any_excludes_trash_and_trash_is_explicit(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    any_ids = {r["id"] for r in walk(session, woo.api_url + "/products", {"per_page": 100, "_fields": "id"})}
    trash = walk(session, woo.api_url + "/products", {"per_page": 100, "status": "trash"})
    assert trash and all(r["status"] == "trash" for r in trash)
    assert not any_ids & {r["id"] for r in trash}
    drafts = get(session, woo, "/products", status="draft", per_page=100).json()
    assert drafts and {r["status"] for r in drafts} == {"draft"}


def test_fields_returns_only_the_requested_keys(woo: WooCommerceSimulator, session: requests.Session) -> None:
    rows = get(session, woo, "/products", _fields="id,date_modified_gmt", per_page=20).json()
    assert rows and all(set(r) == {"id", "date_modified_gmt"} for r in rows)


def test_include(woo: WooCommerceSimulator, session: requests.Session) -> None:
    ids = [p["id"] for p in woo.catalog.iter_products() if p["status"] == "publish"][:3]
    rows = get(
        session, woo, "/products", include=",".join(map(str, ids)), orderby="include", order="asc"
    ).json()
    assert [r["id"] for r in rows] == ids


def test_modified_after_compares_gmt_or_site_local(session: requests.Session) -> None:
    with WooCommerceSimulator(seed=2, size=300) as woo:
        session.auth = (woo.consumer_key, woo.consumer_secret)
        pid = next(p["id"] for p in woo.catalog.iter_products() if p["status"] == "publish")
        bumped = woo.catalog.bump(pid, at=datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC))
        assert (bumped["date_modified_gmt"], bumped["date_modified"]) == (
            "2026-03-10T12:00:00",
            "2026-03-10T09:00:00",
        )

        def ids(**params: Any) -> set[int]:
            rows = walk(session, woo.api_url + "/products", {"per_page": 100, "_fields": "id", **params})
            return {r["id"] for r in rows}

        assert ids(modified_after="2026-03-10T11:59:59", dates_are_gmt="true") == {pid}
        assert ids(modified_after="2026-03-10T12:00:00", dates_are_gmt="true") == set()
        assert ids(modified_after="2026-01-01T00:00:00", modified_before="2026-03-10T12:00:00",
                   dates_are_gmt="true") == set()  # fmt: skip
        # Without dates_are_gmt the wall-clock string is site-local time (UTC-3).
        assert ids(modified_after="2026-03-10T08:59:59") == {pid}
        assert ids(modified_after="2026-03-10T09:00:00") == set()
        assert ids(modified_after="2026-03-10T11:00:00", dates_are_gmt="false") == set()
        assert ids(modified_after="2026-03-10T11:00:00", dates_are_gmt="true") == {pid}


def test_mutations_show_up_over_http(session: requests.Session) -> None:
    with WooCommerceSimulator(seed=3, size=100) as woo:
        session.auth = (woo.consumer_key, woo.consumer_secret)
        product = next(p for p in woo.catalog.iter_products() if p["status"] == "publish")
        woo.catalog.change(product["id"], name="Changed ✓")
        served = session.get(f"{woo.api_url}/products/{product['id']}", timeout=10).json()
        assert served["name"] == "Changed ✓"
        assert served["date_modified_gmt"] > product["date_modified_gmt"]
        woo.catalog.delete(product["id"])
        gone = session.get(f"{woo.api_url}/products/{product['id']}", timeout=10)
        assert gone.status_code == 404 and gone.json()["code"] == "woocommerce_rest_product_invalid_id"


def test_variations_are_paged_like_products(woo: WooCommerceSimulator, session: requests.Session) -> None:
    parent = max(
        (p for p in woo.catalog.iter_products() if p["type"] == "variable"),
        key=lambda p: len(p["variations"]),
    )
    rows = walk(
        session,
        f"{woo.api_url}/products/{parent['id']}/variations",
        {"per_page": 1, "orderby": "id", "order": "asc"},
    )
    assert [r["id"] for r in rows] == sorted(parent["variations"])
    single = get(session, woo, f"/products/{parent['id']}/variations/{rows[0]['id']}").json()
    assert single == rows[0]
    assert get(session, woo, f"/products/{parent['id'] + 10**7}/variations").status_code == 404


def test_a_hundred_thousand_product_catalog_serves_its_last_page() -> None:
    with WooCommerceSimulator(seed=1, size=100_000) as woo, requests.Session() as s:
        s.auth = (woo.consumer_key, woo.consumer_secret)
        first = s.get(
            woo.api_url + "/products", params={"per_page": 100, "orderby": "id", "order": "asc"}, timeout=30
        )
        pages = int(first.headers["X-WP-TotalPages"])
        assert pages > 900
        last = s.get(
            woo.api_url + "/products",
            params={"per_page": 100, "orderby": "id", "order": "asc", "page": pages},
            timeout=30,
        )
        assert last.status_code == 200
        rows = last.json()
        assert 1 <= len(rows) <= 100
        assert rows[-1]["id"] == max(
            p
            for p in woo.catalog.query_products(
                statuses=frozenset({"publish", "draft", "pending", "private", "future"}), orderby="id"
            )
        )


@pytest.fixture
def fresh(session: requests.Session) -> Iterator[WooCommerceSimulator]:
    """A private store for tests that mutate it, so the shared module store stays as generated."""
    with WooCommerceSimulator(seed=5, size=300) as sim:
        session.auth = (sim.consumer_key, sim.consumer_secret)
        yield sim


def live_variable(woo: WooCommerceSimulator) -> dict[str, Any]:
    return next(
        p for p in woo.catalog.iter_products() if p["type"] == "variable" and p["status"] == "publish"
    )


def ids_of(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(r["id"]) for r in response.json()]


def test_related_ids_change_between_two_reads_of_an_unchanged_product(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    pid = next(p["id"] for p in woo.catalog.iter_products() if p["status"] == "publish")
    reads = [get(session, woo, f"/products/{pid}").json() for _ in range(5)]
    assert len({tuple(r["related_ids"]) for r in reads}) > 1
    strip = [{k: v for k, v in r.items() if k != "related_ids"} for r in reads]
    assert all(s == strip[0] for s in strip)


def test_trashed_variable_product_hides_its_variations_until_restored(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    parent = live_variable(fresh)
    pid, vids = parent["id"], sorted(parent["variations"])
    fresh.catalog.trash(pid)
    served = get(session, fresh, f"/products/{pid}").json()
    assert served["status"] == "trash" and served["variations"] == []
    listing = f"/products/{pid}/variations"
    assert ids_of(get(session, fresh, listing)) == []
    binned = get(session, fresh, listing, status="trash", orderby="id", order="asc")
    assert ids_of(binned) == vids and {r["status"] for r in binned.json()} == {"trash"}
    assert pid in ids_of(get(session, fresh, "/products", status="trash", include=pid))
    assert ids_of(get(session, fresh, "/products", include=pid)) == []

    fresh.catalog.restore(pid)
    back = get(session, fresh, f"/products/{pid}").json()
    assert back["status"] == "publish" and sorted(back["variations"]) == vids
    assert ids_of(get(session, fresh, listing, orderby="id", order="asc")) == vids
    assert ids_of(get(session, fresh, listing, status="trash")) == []


def test_variable_to_simple_deletes_the_variations_over_http(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    parent = live_variable(fresh)
    fresh.catalog.change(parent["id"], type="simple")
    listing = get(session, fresh, f"/products/{parent['id']}/variations")
    # The real store answers exactly this after such a change.
    assert listing.json() == json.loads(
        (SAMPLES / "woo_real_v9_variations_after_type_change.json").read_text()
    )
    assert ids_of(get(session, fresh, f"/products/{parent['id']}/variations", status="trash")) == []
    gone = get(session, fresh, f"/products/{parent['id']}/variations/{parent['variations'][0]}")
    assert gone.status_code == 404 and gone.json()["code"] == "woocommerce_rest_product_invalid_id"


def test_editing_a_variation_makes_the_parent_show_up_as_modified(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    parent = live_variable(fresh)
    fresh.skew = timedelta(days=400)  # past every generated stamp, whatever today is
    start = fresh.now().strftime("%Y-%m-%dT%H:%M:%S")
    fresh.skew += timedelta(seconds=2)
    fresh.catalog.change_variation(parent["id"], parent["variations"][0], regular_price="7.70")
    changed = get(session, fresh, "/products", modified_after=start, dates_are_gmt="true", _fields="id")
    assert ids_of(changed) == [parent["id"]]
    served = get(session, fresh, f"/products/{parent['id']}").json()
    assert served["date_modified_gmt"] > start


def test_backdated_import_is_missed_by_modified_after_but_has_a_new_id(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    highest = max(ids_of(get(session, fresh, "/products", orderby="id", order="desc", per_page=1)))
    cursor = fresh.now().strftime("%Y-%m-%dT%H:%M:%S")
    created = fresh.catalog.create_product(
        name="Imported", date_created=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    served = get(session, fresh, f"/products/{created['id']}").json()
    assert served["date_created_gmt"] == served["date_modified_gmt"] == "2024-01-02T03:04:05"
    assert ids_of(get(session, fresh, "/products", modified_after=cursor, dates_are_gmt="true")) == []
    assert created["id"] > highest
    assert ids_of(get(session, fresh, "/products", orderby="id", order="desc", per_page=1)) == [created["id"]]


@pytest.mark.parametrize("value", ["2026-03-10", "2026-03-10T12:00", "yesterday"])
def test_a_date_without_a_time_is_rest_invalid_date(
    woo: WooCommerceSimulator, session: requests.Session, value: str
) -> None:
    response = get(session, woo, "/products", modified_after=value, dates_are_gmt="true")
    assert response.status_code == 400
    assert response.json() == json.loads((SAMPLES / "woo_real_v9_error_date_only.json").read_text())


def test_modified_after_accepts_what_wordpress_accepts(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    for value in (
        "2026-03-10T12:00:00",
        "2026-03-10 12:00:00",
        "2026-03-10T12:00:00.5",
        "2026-03-10T12:00:00Z",
    ):
        assert get(session, woo, "/products", modified_after=value, dates_are_gmt="true").status_code == 200


def test_pages_are_offsets_into_the_listing_at_each_request(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    params = {"per_page": 20, "orderby": "id", "order": "asc", "_fields": "id"}
    before = ids_of(session.get(fresh.api_url + "/products", params={**params, "per_page": 100}, timeout=10))
    victim = before[3]  # on page 1, already read when it is trashed

    def trash_before_page_two(request: Any) -> None:
        if request.path.endswith("/products") and request.param("page") == "2":
            fresh.catalog.trash(victim)
            fresh.before_request = None

    first = session.get(fresh.api_url + "/products", params=params, timeout=10)
    total = int(first.headers["X-WP-Total"])
    fresh.before_request = trash_before_page_two
    second = session.get(fresh.api_url + "/products", params={**params, "page": 2}, timeout=10)
    assert int(second.headers["X-WP-Total"]) == total - 1
    assert ids_of(first) == before[:20]
    # Everything shifted one place left: the first product of the old page 2 slid onto page 1.
    assert ids_of(second) == before[21:41]
    missed = set(before[:40]) - set(ids_of(first)) - set(ids_of(second))
    assert missed == {before[20]}


def test_include_respects_status_on_products_and_variations(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    publish = fresh.catalog.query_products(statuses=frozenset({"publish"}), orderby="id", descending=False)
    kept, binned = publish[0], publish[1]
    fresh.catalog.trash(binned)
    include = f"{kept},{binned}"
    assert ids_of(get(session, fresh, "/products", include=include, status="any")) == [kept]
    assert ids_of(get(session, fresh, "/products", include=include, status="trash")) == [binned]
    rows = get(session, fresh, "/products", include=include, status="trash", _fields="id").json()
    assert rows == [{"id": binned}]

    parent = live_variable(fresh)
    first, second = parent["variations"][:2]
    fresh.catalog.change_variation(parent["id"], second, status="private")
    listing = f"/products/{parent['id']}/variations"
    assert ids_of(get(session, fresh, listing, include=f"{first},{second}", status="private")) == [second]
    rows = get(session, fresh, listing, include=first, _fields="id").json()
    assert rows == [{"id": first}]


def test_stamps_and_date_header_follow_the_skewed_upstream_clock(
    fresh: WooCommerceSimulator, session: requests.Session
) -> None:
    fresh.skew = timedelta(days=-30, hours=5)
    expected = fresh.now()
    created = fresh.catalog.create_product(name="Skewed")
    served = get(session, fresh, f"/products/{created['id']}")
    stamp = datetime.fromisoformat(served.json()["date_modified_gmt"]).replace(tzinfo=UTC)
    assert abs((stamp - expected).total_seconds()) < 5
    date = email.utils.parsedate_to_datetime(served.headers["Date"])
    assert abs((date - expected).total_seconds()) < 5
    trashed = fresh.catalog.trash(created["id"])
    assert (
        abs(
            (
                datetime.fromisoformat(trashed["date_modified_gmt"]).replace(tzinfo=UTC) - fresh.now()
            ).total_seconds()
        )
        < 5
    )
