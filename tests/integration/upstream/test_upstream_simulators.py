"""The clients against the real simulators, the real Redis breaker and the real event log.

Everything crosses a real socket: HTTP to the simulators, Lua scripts in Redis, rows in PostgreSQL.
Retry sleeps are injected and recorded, never slept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from worker.breaker import build_breaker
from worker.infra.errors import (
    AuthenticationError,
    CircuitOpenError,
    FatalUpstreamError,
    MalformedPayload,
    ResponseTooLarge,
    RetriableUpstreamError,
)
from worker.infra.eventlog import EventLog
from worker.kinds.odoo.client import OdooClient
from worker.kinds.woocommerce.client import WooCommerceClient
from worker.sandbox import OdooSimulator, WooCommerceSimulator
from worker.upstream import build_retrying

pytestmark = pytest.mark.integration
ATTEMPTS = 3


class Stack:
    """Settings, breaker, event log and a client wired as the tasks wire them."""

    def __init__(
        self, factory: Any, engine: Engine, redis_client: redis.Redis, redis_url: str, **kw: Any
    ) -> None:
        self.factory, self.engine, self.redis, self.redis_url = factory, engine, redis_client, redis_url
        self.overrides = kw
        self.sleeps: list[float] = []

    def settings(self, **kw: Any) -> Any:
        values = {
            "database_url": self.engine.url.render_as_string(hide_password=False),
            "redis_url": self.redis_url,
            "retry_max_attempts": ATTEMPTS,
            "http_read_timeout": 5.0,
            "http_max_response_bytes": 256 * 1024,
            "odoo_page_size": 100,
            **self.overrides,
            **kw,
        }
        return self.factory(**values)

    def woo(self, sim: WooCommerceSimulator, **kw: Any) -> tuple[WooCommerceClient, Any]:
        s = self.settings(
            woocommerce_url=sim.base_url, woocommerce_consumer_key=sim.consumer_key,
            woocommerce_consumer_secret=sim.consumer_secret, **kw,
        )  # fmt: skip
        breaker = build_breaker("woocommerce", s, self.redis, EventLog(self.engine, self.redis, s))
        client = WooCommerceClient(
            s, breaker, EventLog(self.engine, self.redis, s),
            build_retrying(s, sleep=self.sleeps.append), correlation_id="run-woo",
        )  # fmt: skip
        return client, breaker

    def odoo(self, sim: OdooSimulator, **kw: Any) -> tuple[OdooClient, Any]:
        base = {
            "odoo_url": sim.base_url,
            "odoo_db": sim.db,
            "odoo_username": sim.login,
            "odoo_api_key": sim.api_key,
        }
        s = self.settings(**{**base, **kw})
        breaker = build_breaker("odoo", s, self.redis, EventLog(self.engine, self.redis, s))
        client = OdooClient(
            s, breaker, EventLog(self.engine, self.redis, s),
            build_retrying(s, sleep=self.sleeps.append), correlation_id="run-odoo",
        )  # fmt: skip
        return client, breaker

    def failures(self, upstream: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT event_type, correlation_id, payload, metadata FROM event_log "
                    "WHERE event_type LIKE :t ORDER BY id"
                ),
                {"t": f"{upstream}.sync.failed.%"},
            ).mappings()
            return [dict(r) for r in rows]


@pytest.fixture
def stack(settings_factory: Any, clean_pg: Engine, redis_client: redis.Redis, redis_url: str) -> Stack:
    return Stack(settings_factory, clean_pg, redis_client, redis_url)


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=3, size=730) as sim:
        yield sim


def all_ids(client: WooCommerceClient, **kw: Any) -> list[int]:
    return [r["id"] for p in client.iter_product_pages(**kw) for r in p.records]


def test_woo_pages_to_the_last_page_with_and_without_trash(stack: Stack, woo: WooCommerceSimulator) -> None:
    client, _ = stack.woo(woo)
    live = all_ids(client)
    trash = all_ids(client, status="trash")
    expected = sorted(p["id"] for p in woo.catalog.iter_products(include_trash=True))
    assert live == sorted(live) and not set(live) & set(trash)
    assert sorted(live + trash) == expected
    pages = list(client.iter_product_pages())
    assert [p.page for p in pages] == list(range(1, pages[0].total_pages + 1))
    assert stack.failures("woocommerce") == []


def test_woo_incremental_window_and_resume(stack: Stack, woo: WooCommerceSimulator) -> None:
    client, _ = stack.woo(woo)
    base = all_ids(client)
    later = datetime.now(UTC) + timedelta(days=3)
    for pid in base[5:8]:
        woo.catalog.bump(pid, at=later)
    changed = all_ids(
        client, modified_after=later - timedelta(seconds=1), modified_before=later + timedelta(hours=1)
    )
    assert changed == base[5:8]
    resumed = [p.page for p in client.iter_product_pages(start_page=3)]
    assert resumed[0] == 3


def test_woo_variations_and_id_scan(stack: Stack, woo: WooCommerceSimulator) -> None:
    client, _ = stack.woo(woo)
    scanned = [i for _, batch in client.list_product_ids("any") for i in batch]
    assert scanned == all_ids(client)
    variable = next(p for p in woo.catalog.iter_products() if p["type"] == "variable" and p["variations"])
    got = [r["id"] for p in client.iter_variation_pages(variable["id"]) for r in p.records]
    assert sorted(got) == sorted(variable["variations"])


FAULTS = [
    ({"kind": "status", "status": 503, "retry_after": 2}, RetriableUpstreamError, [2.0, 2.0]),
    ({"kind": "status", "status": 429}, RetriableUpstreamError, None),
    ({"kind": "status", "status": 500}, RetriableUpstreamError, None),
    ({"kind": "status", "status": 404}, FatalUpstreamError, []),
    ({"kind": "hang", "hang_seconds": 3}, RetriableUpstreamError, None),
    ({"kind": "html200"}, MalformedPayload, None),
    ({"kind": "php_notice"}, MalformedPayload, None),
    ({"kind": "truncated", "truncated_full_length": True}, MalformedPayload, None),
    ({"kind": "truncated", "truncated_full_length": False}, MalformedPayload, None),
    ({"kind": "oversized", "oversized_content_length": False}, ResponseTooLarge, None),
    ({"kind": "oversized", "oversized_content_length": True}, ResponseTooLarge, None),
    ({"kind": "auth", "auth_status": 401}, AuthenticationError, []),
    ({"kind": "auth", "auth_status": 403}, AuthenticationError, []),
    ({"kind": "down"}, RetriableUpstreamError, None),
]


@pytest.mark.parametrize(
    ("fault", "expected", "sleeps"),
    FAULTS,
    ids=[
        f"{f['kind']}-{f.get('status', '')}{f.get('auth_status', '')}{f.get('oversized_content_length', '')}"
        f"{f.get('truncated_full_length', '')}"
        for f, _, _ in FAULTS
    ],
)
def test_every_fault_kind_maps_to_its_error_class(
    stack: Stack,
    woo: WooCommerceSimulator,
    fault: dict[str, Any],
    expected: type[Exception],
    sleeps: list[float] | None,
) -> None:
    # Only the hang case needs a short read timeout; elsewhere a loaded machine must not time out.
    client, _breaker = stack.woo(woo, http_read_timeout=0.5 if fault["kind"] == "hang" else 5.0)
    woo.faults.set(**fault)
    try:
        with pytest.raises(expected) as info:
            list(client.iter_product_pages())
    finally:
        woo.faults.clear()
    assert type(info.value) is expected or expected is RetriableUpstreamError
    retried = issubclass(expected, RetriableUpstreamError)
    assert len(stack.sleeps) == (ATTEMPTS - 1 if retried else 0)
    if sleeps is not None:
        assert stack.sleeps == sleeps
    rows = stack.failures("woocommerce")
    assert [(r["payload"]["attempt"], r["payload"]["final"]) for r in rows] == (
        [(1, False), (2, False), (3, True)] if retried else [(1, True)]
    )
    dumped = json.dumps(rows, default=str)
    assert woo.consumer_key not in dumped and woo.consumer_secret not in dumped
    last = rows[-1]
    assert last["event_type"] == "woocommerce.sync.failed.fetch_products"
    assert last["correlation_id"] == "run-woo"
    assert last["payload"]["error_class"] == type(info.value).__name__
    assert last["payload"]["breaker_state"] == "closed"
    assert last["metadata"]["retry_policy"]["max_attempts"] == ATTEMPTS
    assert len(json.dumps(last["payload"]["response"] or {})) < 3000
    if fault["kind"] == "oversized":
        assert woo.faults.oversized_bytes_sent < woo.faults.spec.oversized_bytes
        assert not woo.faults.oversized_completed


def test_retry_after_as_http_date_is_honoured_and_capped(stack: Stack, woo: WooCommerceSimulator) -> None:
    client, _ = stack.woo(woo, retry_after_cap_seconds=60)
    when = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    woo.faults.set(kind="status", status=429, retry_after=when, count=1)
    assert all_ids(client)
    assert stack.sleeps == [60.0]
    woo.faults.set(kind="status", status=503, retry_after=7, count=1)
    stack.sleeps.clear()
    assert all_ids(client)
    assert stack.sleeps == [7.0]


def test_the_open_breaker_stops_the_retry_loop(stack: Stack, woo: WooCommerceSimulator) -> None:
    client, breaker = stack.woo(
        woo, retry_max_attempts=6,
        woocommerce_breaker={"failure_threshold": 2, "minimum_calls": 50, "open_seconds": 60},
    )  # fmt: skip
    woo.faults.set(kind="status", status=502)
    woo.faults.reset_counters()
    with pytest.raises(CircuitOpenError):
        list(client.iter_product_pages())
    assert woo.faults.requests() == 2  # the third attempt never left the process
    assert len(stack.sleeps) == 2
    rows = stack.failures("woocommerce")
    assert rows[-1]["payload"]["error_class"] == "CircuitOpenError"
    assert rows[-1]["payload"]["breaker_state"] == "open" and rows[-1]["payload"]["final"] is True
    assert str(breaker.state()) == "open"
    # A second client in the fleet is refused at once by the same Redis state.
    other, _ = stack.woo(
        woo, woocommerce_breaker={"failure_threshold": 2, "minimum_calls": 50, "open_seconds": 60}
    )
    with pytest.raises(CircuitOpenError):
        list(other.iter_product_pages())
    assert woo.faults.requests() == 2


@pytest.mark.parametrize(
    ("version", "xmlrpc_enabled", "protocol"),
    [("17.0", True, "xmlrpc"), ("19.0", False, "json2")],
    ids=["odoo17-xmlrpc", "odoo19-json2"],
)
def test_odoo_full_incremental_and_archived(
    stack: Stack, version: str, xmlrpc_enabled: bool, protocol: str
) -> None:
    with OdooSimulator(seed=5, size=420, version=version, xmlrpc_enabled=xmlrpc_enabled) as sim:
        client, _ = stack.odoo(sim)
        full = [r for p in client.iter_supplier_pages() for r in p.records]
        assert client.protocol == protocol
        expected = sorted(p["id"] for p in sim.catalog.suppliers())
        assert [r["id"] for r in full] == expected
        assert client.search_supplier_ids() == expected
        some = expected[10]
        sim.catalog.archive(some)
        later = datetime.now(UTC) + timedelta(days=2)
        for pid in expected[20:25]:
            sim.catalog.set_write_date(pid, later)
        sim.catalog.set_write_date(some, later)
        changed = [r for p in client.iter_supplier_pages(since=later) for r in p.records]
        assert sorted(r["id"] for r in changed) == sorted([some, *expected[20:25]])
        assert next(r for r in changed if r["id"] == some)["active"] is False
        assert ("mobile" in client.field_types()) == (version.startswith("17"))
        assert [r["id"] for r in client.read_suppliers([some])] == [some]
    assert stack.failures("odoo") == []


def test_odoo_wrong_key_is_permanent_and_secret_free(stack: Stack) -> None:
    with OdooSimulator(seed=5, size=20, version="17.0") as sim:
        client, _ = stack.odoo(sim, odoo_api_key="0123456789abcdef-wrong-key")
        with pytest.raises(AuthenticationError):
            client.search_supplier_ids()
    rows = stack.failures("odoo")
    assert [r["event_type"] for r in rows] == ["odoo.sync.failed.authenticate"]
    assert "wrong-key" not in json.dumps(rows, default=str) and stack.sleeps == []


def test_odoo_503_is_retried_then_succeeds(stack: Stack) -> None:
    with OdooSimulator(seed=5, size=50, version="17.0") as sim:
        client, _ = stack.odoo(sim)
        sim.faults.set(kind="status", status=503, retry_after=1, count=2)
        ids = client.search_supplier_ids()
        assert ids and stack.sleeps == [1.0, 1.0]  # injected: nothing was slept
    rows = stack.failures("odoo")
    assert [r["payload"]["final"] for r in rows] == [False, False]
    assert sim.api_key not in json.dumps(rows, default=str)


ODOO_FAULTS = [
    ({"kind": "status", "status": 503, "retry_after": 4}, RetriableUpstreamError),
    ({"kind": "status", "status": 500}, RetriableUpstreamError),
    ({"kind": "html200"}, MalformedPayload),
    ({"kind": "truncated"}, MalformedPayload),
    ({"kind": "oversized"}, ResponseTooLarge),
    ({"kind": "auth", "auth_status": 401}, AuthenticationError),
    ({"kind": "auth", "auth_status": 403}, AuthenticationError),
]


@pytest.mark.parametrize("version", ["17.0", "19.0"], ids=["xmlrpc", "json2"])
@pytest.mark.parametrize(
    ("fault", "expected"),
    ODOO_FAULTS,
    ids=[f"{f['kind']}-{f.get('status', f.get('auth_status', ''))}" for f, _ in ODOO_FAULTS],
)
def test_odoo_faults_map_to_their_error_class(
    stack: Stack, version: str, fault: dict[str, Any], expected: type[Exception]
) -> None:
    with OdooSimulator(seed=5, size=30, version=version, xmlrpc_enabled=version == "17.0") as sim:
        client, _ = stack.odoo(sim)
        client.field_types()  # detection, authentication and fields_get happen before the fault
        sim.faults.set(**fault)
        with pytest.raises(expected) as info:
            client.search_supplier_ids()
    retried = isinstance(info.value, RetriableUpstreamError)
    assert len(stack.sleeps) == (ATTEMPTS - 1 if retried else 0)
    if fault.get("retry_after"):
        assert stack.sleeps == [4.0, 4.0]
    rows = stack.failures("odoo")
    assert rows[-1]["event_type"] == "odoo.sync.failed.search_supplier_ids"
    assert (
        rows[-1]["payload"]["final"] is True
        and rows[-1]["payload"]["error_class"] == type(info.value).__name__
    )
    assert rows[-1]["payload"]["request"]["op"] == "search"
    assert sim.api_key not in json.dumps(rows, default=str)
