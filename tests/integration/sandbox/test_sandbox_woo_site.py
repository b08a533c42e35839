"""The WooCommerce simulator's WordPress side over real sockets: the REST index, system status, key errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from worker.sandbox import WooCommerceSimulator

VERSION_FIELDS = "environment.version,environment.wp_version"
CANNOT_LIST = {
    "code": "woocommerce_rest_cannot_view",
    "message": "Sorry, you cannot list resources.",
    "data": {"status": 401},
}
WRONG_SECRET = {
    "code": "woocommerce_rest_authentication_error",
    "message": "Consumer secret is invalid.",
    "data": {"status": 401},
}


@pytest.fixture(scope="module")
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=5, size=30) as sim:
        yield sim


def get(url: str, auth: Any = None, **params: Any) -> requests.Response:
    return requests.get(url, params=params, auth=auth, timeout=10)


def test_the_index_is_public_and_names_namespaces_but_no_version(woo: WooCommerceSimulator) -> None:
    for path in ("/wp-json/", "/wp-json"):
        response = get(woo.base_url + path)
        assert response.status_code == 200
        index = response.json()
        assert "wc/v3" in index["namespaces"] and index["url"] == woo.base_url
        assert "/wc/v3/products" in index["routes"] and "_links" in index
        assert woo.wc_version not in response.text and "version" not in json.dumps(index).lower()


def test_the_index_honours_fields_and_then_drops_links(woo: WooCommerceSimulator) -> None:
    index = get(woo.base_url + "/wp-json/", _fields="name,namespaces").json()
    assert set(index) == {"name", "namespaces"}


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (None, CANNOT_LIST),
        (("ck_" + "0" * 40, "cs_" + "0" * 40), CANNOT_LIST),
        ("wrong-secret", WRONG_SECRET),
    ],
    ids=["no-key", "unknown-key", "wrong-secret"],
)
def test_system_status_needs_the_key(woo: WooCommerceSimulator, auth: Any, expected: dict[str, Any]) -> None:
    if auth == "wrong-secret":
        auth = (woo.consumer_key, "cs_" + "0" * 40)
    response = get(woo.api_url + "/system_status", auth=auth)
    assert (response.status_code, response.json()) == (401, expected)


def test_system_status_tells_the_versions_and_nested_fields_trim_it(woo: WooCommerceSimulator) -> None:
    auth = (woo.consumer_key, woo.consumer_secret)
    full = get(woo.api_url + "/system_status", auth=auth).json()
    assert full["environment"]["version"] == "9.9.5" and full["environment"]["wp_version"] == "6.8"
    assert {"database", "active_plugins", "settings", "security"} <= set(full)
    trimmed = get(woo.api_url + "/system_status", auth=auth, _fields=VERSION_FIELDS).json()
    assert trimmed == {"environment": {"version": "9.9.5", "wp_version": "6.8"}}


def test_a_key_without_manage_woocommerce_gets_403_on_system_status() -> None:
    with WooCommerceSimulator(seed=5, size=3) as sim:
        sim.system_status_readable = False
        auth = (sim.consumer_key, sim.consumer_secret)
        response = get(sim.api_url + "/system_status", auth=auth)
        assert (response.status_code, response.json()["code"]) == (403, "woocommerce_rest_cannot_view")
        assert get(sim.api_url + "/products", auth=auth).status_code == 200


def test_a_known_key_with_a_wrong_secret_is_told_so(woo: WooCommerceSimulator) -> None:
    wrong = "cs_" + "0" * 40
    by_header = get(woo.api_url + "/products", auth=(woo.consumer_key, wrong))
    by_query = get(woo.api_url + "/products", consumer_key=woo.consumer_key, consumer_secret=wrong)
    for response in (by_header, by_query):
        assert (response.status_code, response.json()) == (401, WRONG_SECRET)


def test_nested_fields_filter_inside_objects_and_empty_lists(woo: WooCommerceSimulator) -> None:
    auth = (woo.consumer_key, woo.consumer_secret)
    rows = get(woo.api_url + "/products", auth=auth, _fields="id,dimensions.width,images.src").json()
    assert rows and all(set(r) == {"id", "dimensions", "images"} for r in rows)
    # WordPress intersects keys: an object keeps the named key, a list (numeric keys) keeps nothing.
    assert all(r["dimensions"] == {"width": ""} and r["images"] == [] for r in rows)
