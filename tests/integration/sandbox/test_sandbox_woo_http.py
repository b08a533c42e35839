"""The WooCommerce simulator over real sockets: paging, filters, auth, routes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
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
