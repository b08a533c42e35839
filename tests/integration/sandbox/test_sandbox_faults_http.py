"""Every fault kind provoked over real sockets, switched in-process and over POST /__faults__."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from worker.sandbox import FaultInjector, OdooSimulator, WooCommerceSimulator

PRODUCTS = "/wp-json/wc/v3/products"


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=1, size=200) as sim:
        yield sim


@pytest.fixture
def session(woo: WooCommerceSimulator) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.auth = (woo.consumer_key, woo.consumer_secret)
        yield s


def products(session: requests.Session, woo: WooCommerceSimulator, **kwargs: object) -> requests.Response:
    return session.get(woo.base_url + PRODUCTS, timeout=kwargs.pop("timeout", 10), **kwargs)  # type: ignore[arg-type]


def wait_until(condition: object, limit: float = 10.0) -> None:
    """Poll for a server-side effect; the limit only stops a broken test from hanging."""
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_status_503_is_the_wordpress_maintenance_page(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    woo.faults.set(kind="status", status=503, retry_after=600)
    response = products(session, woo)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "600"
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Briefly unavailable for scheduled maintenance" in response.text


@pytest.mark.parametrize("status", [500, 502, 504, 429])
def test_other_statuses_are_json_errors(
    woo: WooCommerceSimulator, session: requests.Session, status: int
) -> None:
    woo.faults.set(kind="status", status=status, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    response = products(session, woo)
    assert response.status_code == status
    assert response.json()["data"]["status"] == status
    assert response.headers["Retry-After"] == "Wed, 21 Oct 2026 07:28:00 GMT"


def test_html_with_200(woo: WooCommerceSimulator, session: requests.Session) -> None:
    woo.faults.set(kind="html200")
    response = products(session, woo)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_php_notice_before_valid_json(woo: WooCommerceSimulator, session: requests.Session) -> None:
    woo.faults.set(kind="php_notice")
    response = products(session, woo, params={"per_page": 3})
    assert response.status_code == 200
    assert response.text.startswith("<br />\n<b>Notice</b>")
    body = response.text[response.text.index("[") :]
    assert len(json.loads(body)) == 3


def test_truncated_with_full_length_breaks_the_connection(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    woo.faults.set(kind="truncated")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        products(session, woo)


def test_truncated_with_cut_length_is_invalid_json(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    woo.faults.set(kind="truncated", truncated_full_length=False)
    response = products(session, woo)
    assert response.status_code == 200 and response.text.startswith("[{")
    with pytest.raises(ValueError):
        response.json()


def test_oversized_body_is_streamed_until_the_client_aborts(woo: WooCommerceSimulator) -> None:
    total = 256 * 1024 * 1024
    woo.faults.set(kind="oversized", oversized_bytes=total)
    limit, received = 1024 * 1024, 0
    with requests.get(woo.base_url + PRODUCTS, stream=True, timeout=10,
                      auth=(woo.consumer_key, woo.consumer_secret)) as response:  # fmt: skip
        assert response.status_code == 200 and "Content-Length" not in response.headers
        for chunk in response.iter_content(64 * 1024):
            received += len(chunk)
            if received > limit:
                break
    wait_until(lambda: woo.faults.oversized_bytes_sent > 0)
    assert woo.faults.oversized_completed is False
    assert limit < woo.faults.oversized_bytes_sent < total


def test_oversized_body_can_declare_its_length_and_complete(woo: WooCommerceSimulator) -> None:
    woo.faults.set(kind="oversized", oversized_bytes=300_000, oversized_content_length=True)
    response = requests.get(woo.base_url + PRODUCTS, timeout=10, auth=(woo.consumer_key, woo.consumer_secret))
    assert response.headers["Content-Length"] == "300000" and len(response.content) == 300_000
    assert response.content.startswith(b"[{") and response.content.endswith(b"}]")
    wait_until(lambda: woo.faults.oversized_completed)


def test_hang_is_cut_by_the_client_timeout(woo: WooCommerceSimulator, session: requests.Session) -> None:
    woo.faults.set(kind="hang", hang_seconds=30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        products(session, woo, timeout=(2, 0.3))
    woo.faults.clear()
    assert products(session, woo).status_code == 200


@pytest.mark.parametrize("status", [401, 403])
def test_auth_fault(woo: WooCommerceSimulator, session: requests.Session, status: int) -> None:
    woo.faults.set(kind="auth", auth_status=status)
    response = products(session, woo)
    assert response.status_code == status
    assert response.json()["code"] == "woocommerce_rest_cannot_view"


def test_down_refuses_connections_and_recovers_on_the_same_port(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    port = woo.port
    assert products(session, woo).status_code == 200  # a kept-alive connection exists now
    woo.faults.set(kind="down")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(requests.exceptions.ConnectionError):
        products(session, woo)
    woo.faults.clear()
    assert woo.port == port
    assert products(session, woo).status_code == 200


def test_down_over_http_expires_by_itself(woo: WooCommerceSimulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", woo.port, timeout=5)
    conn.request("POST", "/__faults__", body=json.dumps({"kind": "down", "down_seconds": 0.5}))
    answer = conn.getresponse()
    assert answer.status == 200 and answer.getheader("Connection") == "close"
    answer.read()
    conn.close()
    wait_until(lambda: not woo.is_down)
    assert requests.get(woo.base_url + PRODUCTS, auth=(woo.consumer_key, woo.consumer_secret), timeout=5).ok


def test_latency_is_applied_and_counted(woo: WooCommerceSimulator, session: requests.Session) -> None:
    woo.faults.set(latency_ms=20)
    assert products(session, woo).status_code == 200
    assert woo.faults.spec.latency_ms == 20


def test_control_endpoint_sets_counts_and_clears_and_is_never_faulted(
    woo: WooCommerceSimulator, session: requests.Session
) -> None:
    control = woo.base_url + "/__faults__"
    woo.faults.reset_counters()
    assert requests.post(control, json={"kind": "status", "status": 502, "count": 2}, timeout=5).ok
    assert requests.get(control, timeout=5).json()["fault"]["status"] == 502
    codes = [products(session, woo).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    snapshot = requests.get(control, timeout=5).json()
    assert snapshot["requests"] == {PRODUCTS: 3} and snapshot["injected"] == {"status": 2}
    assert requests.post(control, json={"kind": "nope"}, timeout=5).status_code == 400
    assert requests.post(control, json={"latency_ms": "slow"}, timeout=5).status_code == 400
    assert requests.post(control, data=b"[1]", timeout=5).status_code == 400
    assert requests.post(control, json={"kind": "status", "status": 503}, timeout=5).ok
    assert requests.delete(control, timeout=5).json()["fault"]["kind"] is None
    assert products(session, woo).status_code == 200


def test_paths_restrict_faults_to_variations(woo: WooCommerceSimulator, session: requests.Session) -> None:
    parent = next(p for p in woo.catalog.iter_products() if p["type"] == "variable")
    woo.faults.set(kind="status", status=500, paths=["/variations"])
    assert products(session, woo).status_code == 200
    url = f"{woo.base_url}{PRODUCTS}/{parent['id']}/variations"
    assert session.get(url, timeout=5).status_code == 500
    assert woo.faults.requests(f"{PRODUCTS}/{parent['id']}/variations") == 1


def test_rate_faults_some_requests(woo: WooCommerceSimulator, session: requests.Session) -> None:
    woo.faults.set(kind="status", status=503, rate=0.5, seed=3)
    codes = [products(session, woo, params={"per_page": 1}).status_code for _ in range(40)]
    assert 0 < codes.count(503) < 40 and set(codes) == {200, 503}


def test_one_injector_drives_both_simulators() -> None:
    faults = FaultInjector()
    with WooCommerceSimulator(size=20, faults=faults) as woo, OdooSimulator(size=20, faults=faults) as odoo:
        faults.set(kind="down")
        for port in (woo.port, odoo.port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        faults.clear()
        assert requests.get(odoo.base_url + "/web/version", timeout=5).status_code == 404  # 17.0 has none
        conn = http.client.HTTPConnection("127.0.0.1", woo.port, timeout=5)
        conn.request("GET", PRODUCTS)
        assert conn.getresponse().status == 401
        conn.close()
        assert faults.requests(PRODUCTS) == 1 and faults.requests("/web") == 1


def test_keep_alive_serves_many_requests_on_one_connection(woo: WooCommerceSimulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", woo.port, timeout=5)
    for _ in range(5):
        conn.request(
            "GET", PRODUCTS + f"?consumer_key={woo.consumer_key}&consumer_secret={woo.consumer_secret}"
        )
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") != "close"
        assert len(response.read()) == int(response.getheader("Content-Length") or -1)
    conn.close()
