"""The host's hidden rate limit over real sockets: one bucket for every shop of a fleet, the edge's 429."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from worker.sandbox import HostThrottle, ThrottleSpec, WooCommerceSimulator, WooFleet
from worker.sandbox.__main__ import parse

PRODUCTS = "/wp-json/wc/v3/products"


@pytest.fixture
def fleet() -> Iterator[WooFleet]:
    throttle = HostThrottle(ThrottleSpec(rate=5, burst=2, retry_after_share=1.0, retry_after=3))
    with WooFleet(shops=2, size=10, seed=3, throttle=throttle) as served:
        yield served


def get(session: requests.Session, fleet: WooFleet, name: str) -> requests.Response:
    shop = fleet[name]
    return session.get(
        fleet.url_of(name) + PRODUCTS, auth=(shop.consumer_key, shop.consumer_secret), timeout=10
    )


def test_shops_of_one_fleet_share_the_host_limit_and_get_the_edge_page(fleet: WooFleet) -> None:
    with requests.Session() as session:
        answers = [get(session, fleet, name) for name in ("shop-001", "shop-002", "shop-001", "shop-002")]
    assert [r.status_code for r in answers[:2]] == [200, 200]
    refused = answers[2:]
    assert [r.status_code for r in refused] == [429, 429]
    assert all(r.headers["Retry-After"] == "3" and r.headers["Content-Type"] == "text/html" for r in refused)
    assert all(b"<center>nginx</center>" in r.content for r in refused)
    # Refused at the edge: the shops never saw those requests.
    assert fleet["shop-001"].faults.requests() == 1 and fleet["shop-002"].faults.requests() == 1
    assert fleet["shop-001"].throttle is fleet.throttle
    log = fleet.throttle.arrivals()
    assert [(a.tenant, a.path, a.status) for a in log] == [
        ("shop-001", PRODUCTS, 200), ("shop-002", PRODUCTS, 200), ("shop-001", PRODUCTS, 429),
        ("shop-002", PRODUCTS, 429),
    ]  # fmt: skip
    assert log == sorted(log, key=lambda a: a.at)


def test_the_limit_is_set_and_read_over_http_at_the_server_root(fleet: WooFleet) -> None:
    root = f"http://127.0.0.1:{fleet.server.port}/__throttle__"
    with requests.Session() as session:
        assert session.post(root, json={"rate": 1000, "burst": 50}, timeout=10).status_code == 200
        statuses = [get(session, fleet, "shop-001").status_code for _ in range(20)]
        snapshot = session.get(root, params={"log": "1", "reset": "1"}, timeout=10).json()
        assert session.delete(root, timeout=10).json()["throttle"]["rate"] is None
    assert statuses == [200] * 20
    assert snapshot["counts"] == {
        "requests": 20, "admitted": 20, "throttled": 0, "throttled_with_retry_after": 0,
        "throttled_without_retry_after": 0,
    }  # fmt: skip
    assert len(snapshot["arrivals"]) == 20 and fleet.throttle.counts.requests == 0


def test_a_single_simulator_is_not_throttled_by_default_and_can_be() -> None:
    with WooCommerceSimulator(1, 10) as woo, requests.Session() as session:
        session.auth = (woo.consumer_key, woo.consumer_secret)
        assert {session.get(woo.base_url + PRODUCTS, timeout=10).status_code for _ in range(50)} == {200}
        woo.throttle.set(rate=2, burst=1)
        started = time.monotonic()
        statuses = [session.get(woo.base_url + PRODUCTS, timeout=10).status_code for _ in range(3)]
    assert time.monotonic() - started < 0.5 and statuses == [200, 429, 429]
    counts = woo.throttle.counts
    assert (counts.requests, counts.throttled, counts.throttled_without_retry_after) == (53, 2, 2)


def test_the_command_line_builds_the_throttle() -> None:
    args = parse(["woo-fleet", "--throttle-rate", "20", "--throttle-retry-after-share", "0.1"])
    assert (args.throttle_rate, args.throttle_burst, args.throttle_retry_after_share) == (20.0, 4, 0.1)
