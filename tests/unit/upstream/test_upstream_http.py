"""The transport edge over real sockets: classification, size limit, timeouts, redirects."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from upstream_helpers import Reply, Request, ScriptedServer, chunks

from worker.infra.errors import (
    AuthenticationError,
    FatalUpstreamError,
    MalformedPayload,
    RateLimited,
    ResponseTooLarge,
    RetriableUpstreamError,
)
from worker.upstream.http import (
    USER_AGENT,
    HttpTransport,
    build_session,
    error_for_status,
    parse_retry_after,
)
from worker.upstream.summary import redact_url, request_summary

LIMIT = 100_000
BIG = 64 * 1024 * 1024  # far beyond any socket buffer, so "sent it all" is impossible if aborted


@pytest.fixture
def transport(settings_factory: Any) -> HttpTransport:
    s = settings_factory(http_max_response_bytes=LIMIT, http_read_timeout=5, http_max_redirects=2)
    return HttpTransport(s, "woocommerce")


def ok(req: Request) -> Reply:
    return Reply(200, {"Content-Type": "application/json"}, b"[]")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (400, FatalUpstreamError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, FatalUpstreamError),
        (408, RetriableUpstreamError),
        (422, FatalUpstreamError),
        (429, RateLimited),
        (500, RetriableUpstreamError),
        (502, RetriableUpstreamError),
        (503, RetriableUpstreamError),
        (504, RetriableUpstreamError),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else getattr(v, "__name__", "ok"),
)
def test_status_table(status: int, expected: type[Exception] | None) -> None:
    assert error_for_status(status) is expected


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", lambda: now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", lambda: now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_session_defaults(settings_factory: Any) -> None:
    session = build_session(settings_factory(http_max_redirects=2))
    assert session.verify is True
    assert session.max_redirects == 2
    assert session.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("syncworker/")


def test_success_sends_user_agent(transport: HttpTransport) -> None:
    with ScriptedServer(ok) as srv:
        resp = transport.request("GET", srv.url + "/x", operation="op", params={"a": "1"})
    assert resp.status_code == 200 and resp.body == b"[]"
    assert srv.requests[0].headers["user-agent"] == USER_AGENT


def test_429_with_retry_after_and_woo_error_body(transport: HttpTransport) -> None:
    body = b'{"code":"too_many","message":"Slow down","data":{"status":429}}'
    reply = Reply(429, {"Content-Type": "application/json", "Retry-After": "7"}, body)
    with ScriptedServer(lambda r: reply) as srv, pytest.raises(RetriableUpstreamError) as info:
        transport.request("GET", srv.url + "/x", operation="fetch_products")
    err = info.value
    assert err.retry_after == 7.0 and err.status_code == 429
    assert "too_many: Slow down" in err.message
    assert err.upstream == "woocommerce" and err.operation == "fetch_products"
    assert err.response is not None and err.response["headers"]["retry-after"] == "7"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "600"}, RateLimited),  # WordPress maintenance mode, a WAF: pacing us
        ({}, RetriableUpstreamError),  # no word on when: an outage as far as anyone can tell
    ],
    ids=["with-retry-after", "without"],
)
def test_503_is_a_refusal_only_when_it_says_when_to_come_back(
    transport: HttpTransport, headers: dict[str, str], expected: type[Exception]
) -> None:
    reply = Reply(503, {"Content-Type": "text/html", **headers}, b"<html>Briefly unavailable</html>")
    with ScriptedServer(lambda r: reply) as srv, pytest.raises(RetriableUpstreamError) as info:
        transport.request("GET", srv.url + "/x", operation="fetch_products")
    assert type(info.value) is expected


def test_declared_oversize_rejected_before_reading(transport: HttpTransport) -> None:
    reply = Reply(200, {"Content-Type": "application/json"}, chunks(BIG), content_length=BIG)
    with ScriptedServer(lambda r: reply) as srv, pytest.raises(ResponseTooLarge, match="declares"):
        transport.request("GET", srv.url + "/big", operation="op")
    assert srv.bytes_sent < BIG


def test_streamed_oversize_aborted_without_reading_it_all(transport: HttpTransport) -> None:
    reply = Reply(200, {"Content-Type": "application/json"}, chunks(BIG))  # chunked, no length
    with ScriptedServer(lambda r: reply) as srv:
        with pytest.raises(ResponseTooLarge, match="while streaming"):
            transport.request("GET", srv.url + "/big", operation="op")
        assert srv.bytes_sent < BIG


def test_truncated_body_is_malformed(transport: HttpTransport) -> None:
    reply = Reply(200, {"Content-Type": "application/json"}, b'[{"id": 1}, {"id"', content_length=500)
    with ScriptedServer(lambda r: reply) as srv, pytest.raises(MalformedPayload):
        transport.request("GET", srv.url + "/x", operation="op")


def test_read_timeout_is_retriable(settings_factory: Any) -> None:
    transport = HttpTransport(settings_factory(http_read_timeout=0.3), "woocommerce")
    reply = Reply(200, {"Content-Type": "application/json"}, b"[]", delay=1.5)
    with ScriptedServer(lambda r: reply) as srv, pytest.raises(RetriableUpstreamError) as info:
        transport.request("GET", srv.url + "/slow", operation="op")
    assert "Timeout" in info.value.message


def test_connection_refused_is_retriable(transport: HttpTransport) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(RetriableUpstreamError, match="ConnectionError"):
        transport.request("GET", f"http://127.0.0.1:{port}/", operation="op")


def test_redirect_loop_is_fatal(transport: HttpTransport) -> None:
    loop = Reply(302, {"Location": "/again"}, b"")
    with ScriptedServer(lambda r: loop) as srv, pytest.raises(FatalUpstreamError):
        transport.request("GET", srv.url + "/start", operation="op")
    assert len(srv.requests) == 3  # the first request and http_max_redirects=2 hops


def test_exception_messages_and_summaries_never_carry_query_keys(transport: HttpTransport) -> None:
    params = {"consumer_key": "ck_secretvalue1", "consumer_secret": "cs_secretvalue2", "page": 2}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(RetriableUpstreamError) as info:
        transport.request("GET", f"http://127.0.0.1:{port}/p", operation="op", params=params)
    text = repr(info.value.request) + info.value.message
    assert "secretvalue" not in text
    assert info.value.request == request_summary("GET", f"http://127.0.0.1:{port}/p", params)
    assert "secretvalue" not in redact_url("https://h/p?consumer_key=ck_secretvalue1&page=2")


def test_pool_fits_the_page_concurrency_and_urllib3_never_retries(settings_factory: Any) -> None:
    session = build_session(settings_factory(woocommerce_page_concurrency=24))
    adapter = session.get_adapter("https://shop.test/")
    assert adapter._pool_maxsize == 50  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]
