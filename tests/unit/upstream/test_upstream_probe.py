"""The health probes against scripted upstreams: the answers the simulators do not model.

Each probe sends one attempt per request on the bare transport; what it concludes, and what it tells
the operator to check, is decided here. The simulators' own answers are covered by the integration
tests of `syncworker health`.
"""

from __future__ import annotations

import json
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from upstream_helpers import KEY, ODOO_KEY, SECRET, Reply, Request, ScriptedServer
from upstream_odoo_fake import DB, LOGIN, FakeOdoo

from worker.kinds.odoo.probe import probe_odoo
from worker.kinds.woocommerce.probe import probe_woocommerce

JSON = {"Content-Type": "application/json; charset=UTF-8"}
HTML = {"Content-Type": "text/html; charset=UTF-8"}
XML = {"Content-Type": "text/xml"}
INDEX = {"name": "Shop", "namespaces": ["wp/v2", "wc/v3"]}
STATUS = {"environment": {"version": "9.9.5", "wp_version": "6.8"}}


def body(status: int, payload: Any) -> Reply:
    return Reply(status, JSON, json.dumps(payload).encode())


def woo_error(status: int, code: str, message: str) -> Reply:
    return body(status, {"code": code, "message": message, "data": {"status": status}})


class Shop:
    """A WooCommerce whose three probe answers a test can replace one by one."""

    def __init__(self) -> None:
        self.index: Callable[[], Reply] = lambda: body(200, INDEX)
        self.products: Callable[[], Reply] = lambda: body(200, [{"id": 7}])
        self.status: Callable[[], Reply] = lambda: body(200, STATUS)

    def __call__(self, req: Request) -> Reply:
        if req.path == "/wp-json/":
            return self.index()
        if req.path == "/wp-json/wc/v3/products":
            return self.products()
        if req.path == "/wp-json/wc/v3/system_status":
            return self.status()
        return woo_error(404, "rest_no_route", "No route was found matching the URL and request method")


@pytest.fixture
def shop() -> Iterator[tuple[Shop, ScriptedServer]]:
    fake = Shop()
    with ScriptedServer(fake) as srv:
        yield fake, srv


def probe_shop(settings_factory: Any, url: str, **overrides: Any) -> Any:
    values = {"woocommerce_url": url, "woocommerce_consumer_key": KEY, "woocommerce_consumer_secret": SECRET}
    return probe_woocommerce(settings_factory(**{**values, **overrides}))


def test_a_healthy_shop_reports_both_versions_with_one_request_each(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer]
) -> None:
    _, srv = shop
    report = probe_shop(settings_factory, srv.url)
    assert report.problem is None
    assert (report.reachable, report.authenticated, report.version) == (True, True, "9.9.5")
    assert report.extra == {"wordpress_version": "6.8"}
    assert report.summary == f"WooCommerce 9.9.5 (WordPress 6.8) at {srv.url}: consumer key accepted"
    index, products, status = srv.requests
    assert "authorization" not in index.headers  # the index is public: no key goes where it is not needed
    assert products.query == {"per_page": "1", "_fields": "id"}
    assert status.query == {"_fields": "environment.version,environment.wp_version"}


def test_query_string_keys_go_only_to_woocommerce_routes(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer]
) -> None:
    _, srv = shop
    assert probe_shop(settings_factory, srv.url, woocommerce_auth="query").problem is None
    index, products, status = srv.requests
    assert "consumer_key" not in index.query
    assert products.query["consumer_key"] == KEY and status.query["consumer_secret"] == SECRET


def test_an_index_closed_to_visitors_is_noted_and_the_key_decides(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer]
) -> None:
    fake, srv = shop
    fake.index = lambda: woo_error(401, "rest_not_logged_in", "You are not currently logged in.")
    report = probe_shop(settings_factory, srv.url)
    assert report.problem is None and report.authenticated is True
    assert report.extra["site_index"] == "401 rest_not_logged_in: You are not currently logged in."


def test_a_site_without_the_woocommerce_namespace_is_down(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer]
) -> None:
    fake, srv = shop
    fake.index = lambda: body(200, {"name": "Blog", "namespaces": ["oembed/1.0", "wp/v2"]})
    report = probe_shop(settings_factory, srv.url)
    assert report.problem == f"WooCommerce's REST API (wc/v3) is not served at {srv.url}: is it active?"
    assert report.reachable is True and report.authenticated is None


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            lambda: woo_error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid."),
            "WooCommerce refused the consumer secret (401 woocommerce_rest_authentication_error: Consumer "
            "secret is invalid.): check WOOCOMMERCE_CONSUMER_SECRET",
        ),
        (
            lambda: woo_error(
                401,
                "woocommerce_rest_authentication_error",
                "The API key provided does not have read permissions.",
            ),
            "WooCommerce refused the consumer key (401 woocommerce_rest_authentication_error: The API key "
            "provided does not have read permissions.): check WOOCOMMERCE_CONSUMER_KEY/SECRET and the key's "
            "permissions",
        ),
        (
            lambda: Reply(403, HTML, b"<html><h1>403 Forbidden</h1></html>"),
            "was refused (HTTP 403) before WooCommerce: check WOOCOMMERCE_CONSUMER_KEY/SECRET",
        ),
    ],
    ids=["wrong-secret", "write-only-key", "waf-403"],
)
def test_a_refused_key_names_what_to_check(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer], reply: Callable[[], Reply], expected: str
) -> None:
    fake, srv = shop
    fake.products = reply
    report = probe_shop(settings_factory, srv.url)
    assert report.authenticated is False and report.reachable is True
    assert expected in (report.problem or "")
    assert len(srv.requests) == 2  # no version asked with a key that was refused


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            lambda: Reply(200, HTML, b"<!DOCTYPE html><html>cached page</html>"),
            "did not answer as its API does (expected JSON, got Content-Type 'text/html; charset=UTF-8')",
        ),
        (
            lambda: Reply(503, {**HTML, "Retry-After": "600"}, b"<h1>Briefly unavailable</h1>"),
            "is failing (HTTP 503): check the server and any proxy before it",
        ),
        (
            lambda: woo_error(404, "rest_no_route", "No route was found matching the URL and request method"),
            "answered 404 rest_no_route: No route was found matching the URL and request method: "
            "check WOOCOMMERCE_URL",
        ),
    ],
    ids=["html-200", "maintenance-503", "no-route-404"],
)
def test_a_shop_that_answers_wrongly_is_down(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer], reply: Callable[[], Reply], expected: str
) -> None:
    fake, srv = shop
    fake.products = reply
    report = probe_shop(settings_factory, srv.url)
    assert report.problem is not None and expected in report.problem
    assert report.problem.startswith(f"WooCommerce at {srv.url} ")


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        (
            lambda: woo_error(403, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
            "hidden: the key's user may not read system_status",
        ),
        (lambda: Reply(500, HTML, b"<p>critical error</p>"), "unavailable: HTTP 500"),
        (lambda: body(200, {}), "unavailable: system_status answered without an environment"),
    ],
    ids=["no-manage-woocommerce", "server-error", "no-environment"],
)
def test_a_version_the_shop_will_not_tell_is_a_note_not_a_failure(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer], reply: Callable[[], Reply], note: str
) -> None:
    fake, srv = shop
    fake.status = reply
    report = probe_shop(settings_factory, srv.url)
    assert report.problem is None and report.version is None
    assert report.extra["version_note"] == note
    assert report.summary.endswith(f"consumer key accepted; version {note}")


def test_all_requests_of_a_probe_share_one_time_budget(
    settings_factory: Any, shop: tuple[Shop, ScriptedServer]
) -> None:
    fake, srv = shop
    fake.index = lambda: Reply(200, JSON, json.dumps(INDEX).encode(), delay=0.6)
    fake.products = lambda: Reply(200, JSON, b"[]", delay=0.6)
    started = time.monotonic()
    report = probe_shop(settings_factory, srv.url, health_upstream_timeout_seconds=1.0)
    assert time.monotonic() - started < 1.5
    assert report.problem == f"WooCommerce unreachable at {srv.url}: no answer within 1s"


# -- Odoo --------------------------------------------------------------------------------------------


def probe_fake_odoo(settings_factory: Any, url: str, **overrides: Any) -> Any:
    values = {"odoo_url": url, "odoo_db": DB, "odoo_username": LOGIN, "odoo_api_key": ODOO_KEY}
    return probe_odoo(settings_factory(**{**values, **overrides}))


@pytest.mark.parametrize(
    ("version", "protocol", "who"),
    [(17, "xmlrpc", f"login {LOGIN!r}"), (19, "json2", "API key")],
    ids=["17-xmlrpc", "19-json2"],
)
def test_odoo_version_picks_the_protocol_the_client_would(
    settings_factory: Any, version: int, protocol: str, who: str
) -> None:
    fake = FakeOdoo(3, version=version)
    with ScriptedServer(fake) as srv:
        report = probe_fake_odoo(settings_factory, srv.url)
    assert report.problem is None
    assert (report.version, report.extra) == (f"{version}.0", {"protocol": protocol})
    expected = f"Odoo {version}.0 at {srv.url} over {protocol}: {who} accepted on database {DB!r}"
    assert report.summary == expected
    if protocol == "json2":
        assert fake.calls == [("search", {"domain": [["id", "=", 0]], "limit": 1})]


def test_a_forced_protocol_is_used_even_when_the_version_is_unknown(settings_factory: Any) -> None:
    # /web/version is a 404 here, and with json2 forced nothing else is asked for a version.
    with ScriptedServer(FakeOdoo(3, version=17)) as srv:
        report = probe_fake_odoo(settings_factory, srv.url, odoo_protocol="json2")
    assert report.problem is None and report.version is None and report.authenticated is True
    assert report.summary == f"Odoo at {srv.url} over json2: API key accepted on database {DB!r}"


def test_odoo_xmlrpc_fault_on_the_login_names_the_database(settings_factory: Any) -> None:
    fake = FakeOdoo(3, version=17)
    fault = 'Traceback...\npsycopg2.OperationalError: FATAL:  database "acme" does not exist'
    with ScriptedServer(fake) as srv:
        srv.queue.append(Reply(200, XML, version_body()))
        srv.queue.append(Reply(200, XML, xmlrpc.client.dumps(xmlrpc.client.Fault(1, fault)).encode()))
        report = probe_fake_odoo(settings_factory, srv.url, odoo_protocol="xmlrpc")
    assert report.problem == f"Odoo at {srv.url} has no database {DB!r}: check ODOO_DB"


def test_an_odoo_login_page_instead_of_xmlrpc_is_down(settings_factory: Any) -> None:
    page = Reply(200, HTML, b"<!DOCTYPE html><html><form class='oe_login_form'></form></html>")
    with ScriptedServer(lambda _req: page) as srv:
        report = probe_fake_odoo(settings_factory, srv.url, odoo_protocol="xmlrpc")
    assert report.reachable is True
    assert report.problem == (
        f"Odoo at {srv.url} did not answer as its API does (not an XML-RPC response (ResponseError)): "
        "check ODOO_URL, and ODOO_PROTOCOL (Odoo 19+ may serve JSON-2 only)"
    )


def test_an_odoo_behind_a_failing_proxy_is_down(settings_factory: Any) -> None:
    with ScriptedServer(lambda _req: Reply(502, HTML, b"<h1>502 Bad Gateway</h1>")) as srv:
        report = probe_fake_odoo(settings_factory, srv.url)
    assert report.problem == (
        f"Odoo at {srv.url} is failing (HTTP 502): check the server and any proxy before it"
    )


def version_body() -> bytes:
    info = {"server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""]}
    return xmlrpc.client.dumps((info,), methodresponse=True).encode()
