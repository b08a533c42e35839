"""WooCommerceClient against a scripted WooCommerce over real sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from upstream_helpers import KEY, SECRET, FakeBreaker, FakeEventLog, FakeWoo, Reply, ScriptedServer

from worker.infra.errors import AuthenticationError, CircuitOpenError, FatalUpstreamError, MalformedPayload
from worker.kinds.woocommerce.client import WooCommerceClient

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def woo() -> Iterator[ScriptedServer]:
    with ScriptedServer(FakeWoo(1050, trashed=20)) as srv:
        yield srv


def make_client(
    settings_factory: Any, url: str, **overrides: Any
) -> tuple[WooCommerceClient, FakeBreaker, FakeEventLog, list[float]]:
    values: dict[str, Any] = {
        "woocommerce_url": url,
        "woocommerce_consumer_key": KEY,
        "woocommerce_consumer_secret": SECRET,
        "woocommerce_page_concurrency": 4,
        "retry_max_attempts": 3,
    }
    values.update(overrides)
    settings = settings_factory(**values)
    breaker, log, sleeps = FakeBreaker(overrides.pop("threshold", 1000)), FakeEventLog(), []
    from worker.upstream.retry import build_retrying

    retrying = build_retrying(settings, sleep=sleeps.append)
    client = WooCommerceClient(settings, breaker, log, retrying, correlation_id="run-7")
    return client, breaker, log, sleeps


def test_pages_to_the_last_page_in_order(settings_factory: Any, woo: ScriptedServer) -> None:
    client, *_ = make_client(settings_factory, woo.url)
    pages = list(client.iter_product_pages())
    assert [p.page for p in pages] == list(range(1, 12))
    ids = [r["id"] for p in pages for r in p.records]
    assert ids == list(range(21, 1051))  # status=any leaves trash out, in id order, no gaps
    assert pages[0].total == 1030 and pages[0].total_pages == 11
    first = woo.requests[0].query
    assert first["per_page"] == "100" and first["orderby"] == "id" and first["order"] == "asc"
    assert first["status"] == "any"


def test_trash_is_asked_for_explicitly(settings_factory: Any, woo: ScriptedServer) -> None:
    client, *_ = make_client(settings_factory, woo.url)
    ids = [r["id"] for p in client.iter_product_pages(status="trash") for r in p.records]
    assert ids == list(range(1, 21))


def test_incremental_window_params(settings_factory: Any, woo: ScriptedServer) -> None:
    client, *_ = make_client(settings_factory, woo.url)
    after = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
    before = datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    records = [
        r for p in client.iter_product_pages(modified_after=after, modified_before=before) for r in p.records
    ]
    assert records and all(r["date_modified_gmt"] > "2026-01-20T12:00:00" for r in records)
    q = woo.requests[0].query
    assert q["modified_after"] == "2026-01-20T12:00:00" and q["modified_before"] == "2026-02-01T00:00:00"
    assert q["dates_are_gmt"] == "true"


def test_resume_from_start_page(settings_factory: Any, woo: ScriptedServer) -> None:
    client, *_ = make_client(settings_factory, woo.url)
    assert [p.page for p in client.iter_product_pages(start_page=10)] == [10, 11]


def test_without_total_headers_pages_until_a_short_page(settings_factory: Any) -> None:
    with ScriptedServer(FakeWoo(250, send_totals=False)) as srv:
        client, *_ = make_client(settings_factory, srv.url)
        pages = list(client.iter_product_pages())
    assert [len(p.records) for p in pages] == [100, 100, 50]


def test_list_product_ids_and_variations(settings_factory: Any, woo: ScriptedServer) -> None:
    client, *_ = make_client(settings_factory, woo.url)
    ids = [i for _, batch in client.list_product_ids("any") for i in batch]
    assert ids == list(range(21, 1051)) and woo.requests[0].query["_fields"] == "id"
    variations = [r["id"] for p in client.iter_variation_pages(7) for r in p.records]
    assert variations == list(range(7001, 7151))
    assert woo.requests[-1].path == "/wp-json/wc/v3/products/7/variations"


def test_query_string_auth_never_reaches_the_event_log(settings_factory: Any) -> None:
    fake = FakeWoo(10)
    with ScriptedServer(fake) as srv:
        srv.queue.append(Reply(503, {"Retry-After": "1", **JSON}, b'{"code":"x","message":"busy"}'))
        client, _, log, sleeps = make_client(settings_factory, srv.url, woocommerce_auth="query")
        assert len([r for p in client.iter_product_pages() for r in p.records]) == 10
    assert "authorization" not in srv.requests[0].headers
    assert sleeps == [1.0] and len(log.events) == 1
    dumped = json.dumps([e.__dict__ for e in log.events])
    assert KEY not in dumped and SECRET not in dumped
    assert log.events[0].payload["request"]["params"]["consumer_key"] == "[redacted]"


def test_bad_key_is_an_authentication_error_not_retried(settings_factory: Any, woo: ScriptedServer) -> None:
    client, breaker, log, sleeps = make_client(
        settings_factory, woo.url, woocommerce_consumer_secret="cs_wrongwrongwrong"
    )
    with pytest.raises(AuthenticationError, match="woocommerce_rest_cannot_view: Sorry"):
        list(client.iter_product_pages())
    assert breaker.calls == 1 and sleeps == []
    assert [e.payload["status_code"] for e in log.events] == [401]
    assert "cs_wrongwrongwrong" not in json.dumps([e.__dict__ for e in log.events])


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, {"Content-Type": "text/html"}, b"<html>Briefly unavailable</html>"),
        Reply(200, JSON, b"<b>Notice</b>: Undefined index in x.php\n[]"),
        Reply(200, JSON, b'{"products": []}'),
    ],
    ids=["html-200", "php-notice", "not-a-list"],
)
def test_unreadable_200_is_retried_never_an_empty_catalog(
    settings_factory: Any, woo: ScriptedServer, reply: Reply
) -> None:
    client, breaker, log, sleeps = make_client(settings_factory, woo.url)
    woo.queue.extend([reply, reply, reply])
    with pytest.raises(MalformedPayload):
        list(client.iter_product_pages())
    assert breaker.calls == 3 and len(sleeps) == 2
    assert [e.payload["final"] for e in log.events] == [False, False, True]
    assert all(e.payload["error_class"] == "MalformedPayload" for e in log.events)


def test_breaker_opening_in_the_pool_stops_every_page(settings_factory: Any, woo: ScriptedServer) -> None:
    client, breaker, log, _ = make_client(settings_factory, woo.url, retry_max_attempts=5)
    breaker.threshold = 3
    pages = client.iter_product_pages()
    first = next(pages)
    assert first.page == 1
    woo.handler = lambda r: Reply(503, JSON, b'{"code":"down","message":"down"}')
    with pytest.raises(CircuitOpenError):
        list(pages)
    # Calls already admitted when the breaker opened may fail too (one per worker), no more.
    assert 3 <= breaker.failures <= 3 + 3 and breaker.is_open
    # Page 1, the three failures that opened it, and at most one admitted call per other worker.
    assert len(woo.requests) <= 1 + 3 + 3
    finals = [e for e in log.events if e.payload["final"]]
    assert finals and finals[0].payload["breaker_state"] == "open"


def test_correlation_id_can_be_rebound_per_run(settings_factory: Any, woo: ScriptedServer) -> None:
    client, _, log, _ = make_client(settings_factory, woo.url)
    client.correlation_id = "run-8"
    woo.queue.append(Reply(502, JSON, b'{"code":"bad_gateway","message":"x"}'))
    list(client.iter_product_pages())
    assert [e.correlation_id for e in log.events] == ["run-8"]


def test_a_cache_serving_page_one_for_every_page_is_refused(settings_factory: Any) -> None:
    fake = FakeWoo(350)

    def ignores_page(req: Any) -> Reply:
        req.query["page"] = "1"
        return fake(req)

    with ScriptedServer(ignores_page) as srv:
        client, *_ = make_client(settings_factory, srv.url)
        pages = client.iter_product_pages()
        assert next(pages).records[0]["id"] == 1
        with pytest.raises(FatalUpstreamError, match="cache ignoring"):
            next(pages)
