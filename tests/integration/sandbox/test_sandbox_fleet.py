"""Many shops and Odoo databases from one process: isolation, faults, latency, edits, real clients."""

from __future__ import annotations

import email.utils
import json
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from worker.kinds.odoo.client import OdooClient
from worker.kinds.woocommerce.client import WooCommerceClient
from worker.sandbox import OdooFleet, WooFleet
from worker.upstream.retry import build_retrying

PRODUCTS = "/wp-json/wc/v3/products"


class ClosedBreaker:
    """Always closed: these tests exercise the simulators, not the breaker."""

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def state(self) -> str:
        return "closed"


class Events:
    def __init__(self) -> None:
        self.types: list[str] = []

    def record(self, event_type: str, **_: Any) -> None:
        self.types.append(event_type)


@pytest.fixture
def woo() -> Iterator[WooFleet]:
    with WooFleet(shops=3, size=20, seed=5) as fleet:
        yield fleet


@pytest.fixture
def odoo() -> Iterator[OdooFleet]:
    with OdooFleet(databases=2, size=40, seed=5) as fleet:
        yield fleet


def auth(fleet: WooFleet, name: str) -> tuple[str, str]:
    return fleet[name].consumer_key, fleet[name].consumer_secret


def listing(fleet: WooFleet, name: str, **params: Any) -> requests.Response:
    query = {"per_page": 100, "orderby": "id", "order": "asc", **params}
    return requests.get(fleet.url_of(name) + PRODUCTS, auth=auth(fleet, name), params=query, timeout=10)


def rpc(fleet: OdooFleet, name: str, service: str, method: str, *params: Any) -> Any:
    with xmlrpc.client.ServerProxy(f"{fleet.url_of(name)}/xmlrpc/2/{service}") as proxy:
        return getattr(proxy, method)(*params)


def search_read(fleet: OdooFleet, name: str, domain: list[Any], key: str | None = None) -> Any:
    odoo = fleet[name]
    return rpc(
        fleet, name, "object", "execute_kw", odoo.db, odoo.uid, key or odoo.api_key, "res.partner",
        "search_read", [domain],
        {"fields": ["name", "city", "write_date"], "order": "id asc", "context": {"active_test": False}},
    )  # fmt: skip


# Isolation -------------------------------------------------------------------------------------


def test_shops_with_the_same_ids_answer_their_own_catalogs(woo: WooFleet) -> None:
    rows = {name: listing(woo, name).json() for name in ("shop-001", "shop-002")}
    for name, got in rows.items():
        expected = [p for p in woo[name].catalog.iter_products() if p["status"] != "trash"]
        assert [r["id"] for r in got] == [p["id"] for p in expected]
        assert [r["name"] for r in got] == [p["name"] for p in expected]
    names = {name: {r["id"]: r["name"] for r in got} for name, got in rows.items()}
    shared = set(names["shop-001"]) & set(names["shop-002"])
    assert shared, "ids restart per shop, so the two listings share ids"
    assert any(names["shop-001"][i] != names["shop-002"][i] for i in shared)


def test_each_shop_links_and_describes_itself_under_its_prefix(woo: WooFleet) -> None:
    url = woo.url_of("shop-002")
    response = listing(woo, "shop-002", per_page=5)
    assert response.links["next"]["url"].startswith(url + PRODUCTS + "?")
    assert all(r["permalink"].startswith(url + "/") for r in response.json())
    index = requests.get(url + "/wp-json/", timeout=10).json()
    assert index["url"] == url and index["home"] == url


def test_another_shops_key_is_refused_as_woocommerce_refuses_it(woo: WooFleet) -> None:
    url = woo.url_of("shop-002") + PRODUCTS
    key_a, secret_a = auth(woo, "shop-001")
    unknown_key = requests.get(url, auth=(key_a, secret_a), timeout=10)
    assert unknown_key.status_code == 401
    assert unknown_key.json() == {
        "code": "woocommerce_rest_cannot_view",
        "message": "Sorry, you cannot list resources.",
        "data": {"status": 401},
    }
    wrong_secret = requests.get(url, auth=(woo["shop-002"].consumer_key, secret_a), timeout=10)
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["code"] == "woocommerce_rest_authentication_error"
    assert wrong_secret.json()["message"] == "Consumer secret is invalid."


def test_an_unknown_tenant_is_a_404_page(woo: WooFleet) -> None:
    response = requests.get(woo.url_of("shop-999") + PRODUCTS, auth=auth(woo, "shop-001"), timeout=10)
    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/html")


def test_tenant_names_must_be_usable_as_source_names() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        WooFleet(shops=1, prefix="Shop")


def test_the_date_header_follows_each_tenants_clock(woo: WooFleet) -> None:
    woo["shop-001"].skew = timedelta(hours=5)
    ahead = email.utils.parsedate_to_datetime(listing(woo, "shop-001").headers["Date"])
    level = email.utils.parsedate_to_datetime(listing(woo, "shop-002").headers["Date"])
    assert ahead - level > timedelta(hours=4)


# Faults ----------------------------------------------------------------------------------------


def test_a_status_fault_on_one_shop_leaves_the_others_answering(woo: WooFleet) -> None:
    control = woo.url_of("shop-001") + "/__faults__"
    set_fault = {"kind": "status", "status": 503, "retry_after": 7, "paths": [PRODUCTS]}
    assert requests.post(control, json=set_fault, timeout=10).status_code == 200
    down = listing(woo, "shop-001")
    assert down.status_code == 503 and down.headers["Retry-After"] == "7"
    assert b"Briefly unavailable" in down.content
    # Fault paths are the tenant's own paths: its index is outside them and still answers.
    assert requests.get(woo.url_of("shop-001") + "/wp-json/", timeout=10).status_code == 200
    assert listing(woo, "shop-002").status_code == 200
    assert woo["shop-001"].faults.injected == {"status": 1}
    assert woo["shop-002"].faults.injected == {} and woo["shop-002"].faults.requests(PRODUCTS) == 1
    assert requests.delete(control, timeout=10).status_code == 200
    assert listing(woo, "shop-001").status_code == 200


def test_a_hanging_shop_does_not_hold_up_the_others(woo: WooFleet) -> None:
    woo["shop-001"].faults.set(kind="hang", hang_seconds=30)
    outcome: list[BaseException] = []

    def ask_hanging_shop() -> None:
        try:
            requests.get(woo.url_of("shop-001") + PRODUCTS, auth=auth(woo, "shop-001"), timeout=(5, 0.5))
        except requests.RequestException as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=ask_hanging_shop)
    waiting.start()
    wait_for(lambda: woo["shop-001"].faults.injected.get("hang") == 1)
    assert listing(woo, "shop-002").status_code == 200
    assert woo.server.in_flight >= 1  # the hung request is still held by the server
    waiting.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ReadTimeout)


def test_a_shop_that_is_down_fails_its_requests_and_can_be_brought_back(woo: WooFleet) -> None:
    control = woo.url_of("shop-001") + "/__faults__"
    requests.post(control, json={"kind": "down"}, timeout=10)
    with pytest.raises(requests.ConnectionError):
        listing(woo, "shop-001")
    assert listing(woo, "shop-002").status_code == 200
    assert requests.get(control, timeout=10).json()["fault"]["kind"] == "down"
    requests.delete(control, timeout=10)
    assert listing(woo, "shop-001").status_code == 200


def test_a_fault_on_one_odoo_database_leaves_the_other_answering(odoo: OdooFleet) -> None:
    odoo["db-001"].faults.set(kind="status", status=502)
    with pytest.raises(xmlrpc.client.ProtocolError) as failed:
        search_read(odoo, "db-001", [])
    assert failed.value.errcode == 502
    assert len(search_read(odoo, "db-002", [])) == 40


# Latency ---------------------------------------------------------------------------------------


def test_latency_applies_to_every_request_and_requests_overlap() -> None:
    latency_s = 0.4
    with WooFleet(shops=8, size=3, latency_ms=latency_s * 1000) as fleet:
        start = threading.Barrier(len(fleet))
        elapsed: dict[str, float] = {}

        def ask(name: str) -> None:
            start.wait(timeout=10)
            began = time.monotonic()
            assert requests.get(fleet.url_of(name) + "/wp-json/", timeout=10).status_code == 200
            elapsed[name] = time.monotonic() - began

        threads = [threading.Thread(target=ask, args=(name,)) for name in fleet]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(elapsed) == sorted(fleet)
        assert min(elapsed.values()) >= latency_s
        # All eight were waiting out their latency at once: nothing queued behind anything.
        assert fleet.server.peak_in_flight == len(fleet)
        # A handler thread finishes its bookkeeping just after its answer went out.
        deadline = time.monotonic() + 5
        while fleet.server.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fleet.server.in_flight == 0


def test_control_requests_skip_the_latency() -> None:
    with WooFleet(shops=1, size=3, latency_ms=60_000) as fleet:
        response = requests.get(fleet.url_of("shop-001") + "/__faults__", timeout=5)
        assert response.status_code == 200 and fleet.server.peak_in_flight == 0


# Edits -----------------------------------------------------------------------------------------


def test_an_edit_is_what_the_next_incremental_listing_returns(woo: WooFleet) -> None:
    edit_url = woo.url_of("shop-001") + "/__edit__"
    target = listing(woo, "shop-001").json()[3]["id"]
    edited = requests.post(edit_url, json={"id": target, "fields": {"name": "Renamed"}}, timeout=10).json()
    assert edited["tenant"] == "shop-001" and edited["id"] == target
    modified_at = datetime.fromisoformat(edited["modified_at"])
    assert edited["modified"] == modified_at.strftime("%Y-%m-%dT%H:%M:%S")
    since = (modified_at - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    window = {"modified_after": since, "dates_are_gmt": "true"}
    changed = listing(woo, "shop-001", **window).json()
    assert [(r["id"], r["name"], r["date_modified_gmt"]) for r in changed] == [
        (target, "Renamed", edited["modified"])
    ]
    assert listing(woo, "shop-002", **window).json() == []  # the same id in another shop is untouched


def test_an_edit_without_a_body_renames_a_published_product(woo: WooFleet) -> None:
    edited = requests.post(woo.url_of("shop-002") + "/__edit__", timeout=10).json()
    current = woo["shop-002"].catalog.get(edited["id"])
    assert current["status"] == "publish" and current["name"] == edited["record"]["name"]
    assert current["name"].startswith("Sandbox edit ")
    again = woo.edit("shop-002", edited["id"])
    assert again["record"]["name"] != current["name"]


@pytest.mark.parametrize(
    ("method", "body", "status", "error"),
    [
        ("POST", {"id": 999_999}, 404, "no such record: 999999"),
        ("POST", {"id": 10, "fields": {"date_created": "2020-01-01T00:00:00"}}, 400, "cannot be overridden"),
        ("POST", {"id": "10"}, 400, '"id" must be an integer'),
        ("POST", [10], 400, "JSON object"),
        ("POST", {"id": 10, "field": {"name": "typo"}}, 400, "JSON object"),
        ("GET", None, 405, "use POST"),
    ],
    ids=["unknown-id", "indexed-field", "id-as-string", "not-an-object", "unknown-key", "wrong-method"],
)
def test_an_edit_that_cannot_apply_is_refused(
    woo: WooFleet, method: str, body: Any, status: int, error: str
) -> None:
    response = requests.request(method, woo.url_of("shop-001") + "/__edit__", json=body, timeout=10)
    assert response.status_code == status and error in response.json()["error"]


def test_an_edit_of_an_empty_shop_finds_nothing_to_edit() -> None:
    with WooFleet(shops=1, size=0) as fleet:
        response = requests.post(fleet.url_of("shop-001") + "/__edit__", timeout=10)
        assert response.status_code == 404 and "no published product" in response.json()["error"]


def test_an_odoo_edit_stamps_write_date_and_the_next_search_sees_it(odoo: OdooFleet) -> None:
    edited = requests.post(
        odoo.url_of("db-002") + "/__edit__", json={"fields": {"city": "Gent"}}, timeout=10
    ).json()
    assert odoo["db-002"].catalog.value(edited["id"], "supplier_rank") > 0
    # Shown truncated to the second, as Odoo does; stored with its microseconds.
    assert edited["modified_at"].startswith(edited["modified"].replace(" ", "T") + ".")
    changed = search_read(odoo, "db-002", [("write_date", ">=", edited["modified"])])
    assert [(r["id"], r["city"]) for r in changed] == [(edited["id"], "Gent")]
    assert search_read(odoo, "db-001", [("write_date", ">=", edited["modified"])]) == []


def test_an_odoo_edit_in_a_database_without_suppliers_makes_one() -> None:
    with OdooFleet(databases=1, size=20, seed=250) as fleet:  # this seed draws no supplier at all
        catalog = fleet["db-001"].catalog
        assert not list(catalog.suppliers())
        edited = requests.post(fleet.url_of("db-001") + "/__edit__", timeout=10).json()
        assert edited["id"] == min(catalog.ids()) and edited["record"]["supplier_rank"] == 1
        domain = [("supplier_rank", ">", 0), ("write_date", ">=", edited["modified"])]
        assert [r["id"] for r in search_read(fleet, "db-001", domain)] == [edited["id"]]


def test_an_odoo_edit_of_an_empty_database_finds_nothing_to_edit() -> None:
    with OdooFleet(databases=1, size=0) as fleet:
        response = requests.post(fleet.url_of("db-001") + "/__edit__", timeout=10)
        assert response.status_code == 404 and "no partner" in response.json()["error"]


# Odoo credentials ------------------------------------------------------------------------------


def test_odoo_databases_with_the_same_ids_answer_their_own_partners(odoo: OdooFleet) -> None:
    rows = {name: search_read(odoo, name, []) for name in odoo}
    for name, got in rows.items():
        assert [(r["id"], r["name"]) for r in got] == [
            (p["id"], p["name"]) for p in odoo[name].catalog.iter_partners()
        ]
    first, second = ({r["id"]: r["name"] for r in got} for got in rows.values())
    assert set(first) & set(second)
    assert any(first[i] != second[i] for i in set(first) & set(second))


def test_another_databases_credentials_are_refused_as_odoo_refuses_them(odoo: OdooFleet) -> None:
    a, b = odoo["db-001"], odoo["db-002"]
    assert rpc(odoo, "db-002", "common", "authenticate", b.db, b.login, a.api_key, {}) is False
    assert rpc(odoo, "db-002", "common", "authenticate", b.db, a.login, b.api_key, {}) is False
    with pytest.raises(xmlrpc.client.Fault) as denied:
        search_read(odoo, "db-002", [], key=a.api_key)
    assert denied.value.faultCode == 3 and denied.value.faultString == "Access Denied"
    with pytest.raises(xmlrpc.client.Fault) as no_db:
        rpc(odoo, "db-002", "common", "authenticate", a.db, a.login, a.api_key, {})
    assert no_db.value.faultCode == 1 and 'database "db-001" does not exist' in no_db.value.faultString


# Real clients ----------------------------------------------------------------------------------


def test_the_woocommerce_client_pages_a_fleet_shop(settings_factory: Any) -> None:
    with WooFleet(shops=2, size=250, seed=9) as fleet:
        source = fleet.source("shop-002")
        settings = settings_factory(
            woocommerce_url=source["url"],
            woocommerce_consumer_key=source["credentials"]["consumer_key"],
            woocommerce_consumer_secret=source["credentials"]["consumer_secret"],
        )
        sleeps: list[float] = []
        retrying = build_retrying(settings, sleep=sleeps.append)
        client = WooCommerceClient(settings, ClosedBreaker(), Events(), retrying)
        pages = list(client.iter_product_pages())
        expected = [p["id"] for p in fleet["shop-002"].catalog.iter_products(include_trash=False)]
        assert len(pages) > 1 and [r["id"] for page in pages for r in page.records] == expected
        assert sleeps == []


def test_the_odoo_client_pages_a_fleet_database(settings_factory: Any) -> None:
    with OdooFleet(databases=2, size=120, seed=9) as fleet:
        source = fleet.source("db-001")
        settings = settings_factory(
            odoo_url=source["url"],
            odoo_db=source["options"]["db"],
            odoo_username=source["options"]["username"],
            odoo_api_key=source["credentials"]["api_key"],
            odoo_page_size=10,
        )
        client = OdooClient(
            settings, ClosedBreaker(), Events(), build_retrying(settings, sleep=lambda _: None)
        )
        pages = list(client.iter_supplier_pages())
        expected = [p["id"] for p in fleet["db-001"].catalog.suppliers()]
        assert len(pages) > 1 and [r["id"] for page in pages for r in page.records] == expected
        assert fleet["db-002"].faults.requests() == 0


# Command line ----------------------------------------------------------------------------------


def run_fleet(*args: str, tenants: int) -> tuple[subprocess.Popen[str], list[dict[str, Any]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.sandbox", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, [json.loads(proc.stdout.readline()) for _ in range(tenants)]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    if proc.stdout is not None:
        proc.stdout.close()


def test_woo_fleet_from_the_command_line_prints_one_source_per_shop() -> None:
    from worker.sources.config import SourceConfig

    args = ("woo-fleet", "--shops", "3", "--size", "5", "--latency-ms", "20", "--prefix", "eu-shop")
    proc, lines = run_fleet(*args, tenants=3)
    try:
        sources = [SourceConfig.model_validate(line) for line in lines]
        assert [s.name for s in sources] == ["eu-shop-001", "eu-shop-002", "eu-shop-003"]
        assert len({s.secret("consumer_key") for s in sources}) == 3
        last = sources[-1]
        response = requests.get(
            last.url + PRODUCTS,
            auth=(last.secret("consumer_key"), last.secret("consumer_secret")),
            params={"per_page": 100},
            timeout=10,
        )
        assert response.status_code == 200 and 0 < len(response.json()) <= 5
    finally:
        stop(proc)


def test_odoo_fleet_from_the_command_line_prints_one_source_per_database() -> None:
    args = ("odoo-fleet", "--databases", "2", "--size", "6", "--odoo-version", "19.0")
    proc, lines = run_fleet(*args, tenants=2)
    try:
        assert [(line["kind"], line["options"]["db"]) for line in lines] == [
            ("odoo", "db-001"),
            ("odoo", "db-002"),
        ]
        response = requests.post(
            lines[1]["url"] + "/json/2/res.partner/search_count",
            headers={"Authorization": f"bearer {lines[1]['credentials']['api_key']}"},
            json={"domain": [], "context": {"active_test": False}},
            timeout=10,
        )
        assert response.status_code == 200 and response.json() == 6
    finally:
        stop(proc)


@pytest.mark.parametrize(
    "args",
    [
        ("odoo-fleet", "--shops", "2"),
        ("woocommerce", "--latency-ms", "100"),
        ("odoo", "--prefix", "x"),
        ("woo-fleet", "--shops", "0"),
    ],
    ids=["shops-for-odoo", "latency-for-one-shop", "prefix-for-one-database", "no-shops"],
)
def test_the_command_line_refuses_options_that_do_not_apply(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.sandbox", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and ("does not apply" in done.stderr or "at least 1" in done.stderr)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
