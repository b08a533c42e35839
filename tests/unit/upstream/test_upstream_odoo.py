"""OdooClient over XML-RPC and JSON-2 against a small Odoo on a real socket."""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from upstream_helpers import ODOO_KEY, FakeBreaker, FakeEventLog, Reply, ScriptedServer
from upstream_odoo_fake import DB, LOGIN, FakeOdoo

from worker.infra.errors import AuthenticationError, FatalUpstreamError, MalformedPayload
from worker.kinds.odoo.client import OdooClient
from worker.kinds.odoo.paging import OdooCursor
from worker.upstream.retry import build_retrying


def client_for(
    settings_factory: Any, url: str, **overrides: Any
) -> tuple[OdooClient, FakeBreaker, FakeEventLog, list[float]]:
    values: dict[str, Any] = {
        "odoo_url": url, "odoo_db": DB, "odoo_username": LOGIN, "odoo_api_key": ODOO_KEY,
        "odoo_page_size": 50, "sync_overlap_seconds": 120, "retry_max_attempts": 3,
    }  # fmt: skip
    values.update(overrides)
    settings = settings_factory(**values)
    breaker, log, sleeps = FakeBreaker(), FakeEventLog(), []
    retrying = build_retrying(settings, sleep=sleeps.append)
    return OdooClient(settings, breaker, log, retrying, correlation_id="run-3"), breaker, log, sleeps


@pytest.fixture(params=[17, 19], ids=["xmlrpc-17", "json2-19"])
def odoo(request: pytest.FixtureRequest) -> Iterator[tuple[FakeOdoo, ScriptedServer]]:
    fake = FakeOdoo(480, version=request.param)
    with ScriptedServer(fake) as srv:
        yield fake, srv


def expected_ids(fake: FakeOdoo) -> list[int]:
    return [p["id"] for p in fake.partners if p["supplier_rank"] > 0]


def test_full_pass_by_id_includes_archived(
    settings_factory: Any, odoo: tuple[FakeOdoo, ScriptedServer]
) -> None:
    fake, srv = odoo
    client, *_ = client_for(settings_factory, srv.url)
    pages = list(client.iter_supplier_pages())
    ids = [r["id"] for p in pages for r in p.records]
    assert ids == expected_ids(fake)
    assert any(r["active"] is False for p in pages for r in p.records)
    assert pages[-1].next_cursor == OdooCursor(after_id=ids[-1])
    assert client.protocol == ("json2" if fake.version >= 19 else "xmlrpc")
    searches = [kw for op, kw in fake.calls if op == "search_read"]
    assert all(kw["context"] == {"active_test": False} and "offset" not in kw for kw in searches)
    assert searches[1]["order"] == "id asc" and searches[1]["limit"] == 50


def test_fields_checked_once_and_missing_ones_not_requested(
    settings_factory: Any, odoo: tuple[FakeOdoo, ScriptedServer]
) -> None:
    fake, srv = odoo
    client, *_ = client_for(settings_factory, srv.url)
    list(client.iter_supplier_pages())
    list(client.iter_supplier_pages())
    assert [op for op, _ in fake.calls].count("fields_get") == 1
    requested = next(kw["fields"] for op, kw in fake.calls if op == "search_read")
    assert ("mobile" in requested) == (fake.version < 19)


def test_incremental_pages_by_id_inside_the_overlap_window(
    settings_factory: Any, odoo: tuple[FakeOdoo, ScriptedServer]
) -> None:
    fake, srv = odoo
    client, *_ = client_for(settings_factory, srv.url, odoo_page_size=7)
    since = datetime(2026, 1, 1, 0, 4, 0, tzinfo=UTC)  # overlap of 120 s reaches back to 00:02:00
    pages = list(client.iter_supplier_pages(since=since))
    got = [r["id"] for p in pages for r in p.records]
    want = [p["id"] for p in fake.partners
            if p["supplier_rank"] > 0 and p["write_date"] >= "2026-01-01 00:02:00"]  # fmt: skip
    assert got == want and len(got) > 7 * 3
    searches = [kw for op, kw in fake.calls if op == "search_read"]
    assert all(kw["order"] == "id asc" for kw in searches)
    last = pages[-1].next_cursor
    assert last.after_id == got[-1] and last.since == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    # Resuming from a page's cursor continues exactly after it, without re-reading the overlap.
    resumed = [r["id"] for p in client.iter_supplier_pages(cursor=pages[1].next_cursor) for r in p.records]
    assert resumed == got[14:]


def test_server_time_refresh_asks_the_upstream(
    settings_factory: Any, odoo: tuple[FakeOdoo, ScriptedServer]
) -> None:
    fake, srv = odoo
    client, *_ = client_for(settings_factory, srv.url)
    assert client.server_time() is None
    assert client.server_time(refresh=True) is not None  # the Date header of that search
    assert [op for op, _ in fake.calls] == ["search"]


def test_search_and_read_suppliers(settings_factory: Any, odoo: tuple[FakeOdoo, ScriptedServer]) -> None:
    fake, srv = odoo
    client, *_ = client_for(settings_factory, srv.url)
    assert client.search_supplier_ids() == expected_ids(fake)
    rows = client.read_suppliers([10, 11, 12])
    assert [r["id"] for r in rows] == [10, 11, 12] and rows[0]["active"] is False


def test_wrong_key_is_authentication_error(
    settings_factory: Any, odoo: tuple[FakeOdoo, ScriptedServer]
) -> None:
    _, srv = odoo
    client, breaker, log, sleeps = client_for(settings_factory, srv.url, odoo_api_key="not-the-right-key")
    with pytest.raises(AuthenticationError):
        list(client.iter_supplier_pages())
    assert sleeps == [] and breaker.failures == 0
    assert "not-the-right-key" not in json.dumps([e.__dict__ for e in log.events])
    assert log.events[-1].payload["final"] is True


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            xmlrpc.client.Fault(3, "Traceback\nodoo.exceptions.AccessDenied: Access Denied"),
            AuthenticationError,
        ),
        (xmlrpc.client.Fault(4, "Traceback\nodoo.exceptions.AccessError: not allowed"), AuthenticationError),
        (xmlrpc.client.Fault(2, "Object res.partnr doesn't exist"), FatalUpstreamError),
        (
            xmlrpc.client.Fault(1, 'Traceback\npsycopg2.OperationalError: database "acm" does not exist'),
            FatalUpstreamError,
        ),
    ],
    ids=["access-denied", "access-error", "missing-model", "missing-db"],
)
def test_faults_are_permanent(
    settings_factory: Any, fault: xmlrpc.client.Fault, expected: type[Exception]
) -> None:
    fake = FakeOdoo(10)
    with ScriptedServer(fake) as srv:
        client, breaker, log, sleeps = client_for(settings_factory, srv.url, odoo_protocol="xmlrpc")
        client.search_supplier_ids()
        fake.fault = fault
        with pytest.raises(expected):
            client.search_supplier_ids()
    assert sleeps == [] and breaker.failures == 0
    assert log.events[-1].event_type == "odoo.sync.failed.search_supplier_ids"
    request = log.events[-1].payload["request"]
    assert request["method"] == "execute_kw" and request["op"] == "search"
    assert ODOO_KEY not in json.dumps([e.__dict__ for e in log.events])


def test_serialization_fault_is_retried(settings_factory: Any) -> None:
    fake = FakeOdoo(10)
    with ScriptedServer(fake) as srv:
        client, breaker, log, sleeps = client_for(settings_factory, srv.url, odoo_protocol="xmlrpc")
        client.search_supplier_ids()
        fake.fault = xmlrpc.client.Fault(
            1, "Traceback\npsycopg2.errors.SerializationFailure: could not serialize access"
        )
        with pytest.raises(Exception, match="could not serialize"):
            client.search_supplier_ids()
    assert len(sleeps) == 2 and breaker.failures == 3
    assert [e.payload["attempt"] for e in log.events] == [1, 2, 3]


def test_html_instead_of_xmlrpc_is_malformed_and_retried(settings_factory: Any) -> None:
    fake = FakeOdoo(10)
    with ScriptedServer(fake) as srv:
        client, _, _, sleeps = client_for(settings_factory, srv.url, odoo_protocol="xmlrpc")
        html = Reply(200, {"Content-Type": "text/html"}, b"<html><body>Odoo is upgrading</body></html>")
        srv.queue.append(html)
        assert client.search_supplier_ids() == expected_ids(fake)  # authenticate retried, then fine
        srv.queue.extend([html] * 3)
        with pytest.raises(MalformedPayload):
            client.search_supplier_ids()
    assert len(sleeps) == 1 + 2


def test_rpc_summaries_never_carry_the_key(settings_factory: Any) -> None:
    fake = FakeOdoo(10)
    with ScriptedServer(fake) as srv:
        client, _, log, _ = client_for(settings_factory, srv.url, odoo_protocol="xmlrpc")
        srv.queue.append(Reply(503, {"Content-Type": "text/html", "Retry-After": "3"}, b"<html>busy</html>"))
        client.search_supplier_ids()
    assert log.events[0].payload["request"] == {"method": "authenticate", "db": DB, "login": LOGIN}
    assert log.events[0].payload["retry_after"] == 3.0
