"""`syncworker health` asking the upstream simulators over real sockets: versions, credentials, outages.

The probes bypass the breaker: its Redis keys must be byte-for-byte the same after any probe.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from ops_env import free_port

from worker.breaker import build_breaker
from worker.cli import main
from worker.cli.output import CliState
from worker.infra.errors import RetriableUpstreamError
from worker.sandbox import OdooSimulator, WooCommerceSimulator

pytestmark = pytest.mark.integration
UPSTREAMS = ("--check", "odoo", "--check", "woocommerce")
WRONG = "wrong-key-0123456789abcdef0123"


@pytest.fixture(scope="module")
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=7, size=20) as sim:
        yield sim


@pytest.fixture(scope="module", params=["17.0", "19.0"], ids=["odoo17-xmlrpc", "odoo19-json2"])
def odoo(request: pytest.FixtureRequest) -> Iterator[OdooSimulator]:
    with OdooSimulator(seed=7, size=20, version=request.param, xmlrpc_enabled=False) as sim:
        yield sim


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket completes the TCP handshake and then never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def woo_settings(sim: WooCommerceSimulator, **kw: Any) -> dict[str, Any]:
    return {
        "woocommerce_url": sim.base_url,
        "woocommerce_consumer_key": sim.consumer_key,
        "woocommerce_consumer_secret": sim.consumer_secret,
        **kw,
    }


def odoo_settings(sim: OdooSimulator, **kw: Any) -> dict[str, Any]:
    return {
        "odoo_url": sim.base_url,
        "odoo_db": sim.db,
        "odoo_username": sim.login,
        "odoo_api_key": sim.api_key,
        **kw,
    }


def invoke(settings: Any, *args: str) -> Any:
    result = CliRunner().invoke(main, ["health", *args], obj=CliState(settings=settings))
    for secret in settings.secret_values():
        assert secret not in result.stdout and secret not in result.stderr
    return result


def by_name(result: Any) -> dict[str, Any]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_healthy_upstreams_report_reachable_authenticated_and_their_versions(
    settings_factory: Any, woo: WooCommerceSimulator, odoo: OdooSimulator
) -> None:
    settings = settings_factory(**woo_settings(woo), **odoo_settings(odoo))
    result = invoke(settings, *UPSTREAMS, "--json")
    assert result.exit_code == 0, result.output
    checks = by_name(result)
    assert checks["woocommerce"]["upstream"] == {
        "url": woo.base_url,
        "reachable": True,
        "authenticated": True,
        "version": "9.9.5",
        "wordpress_version": "6.8",
    }
    protocol = "json2" if odoo.major >= 19 else "xmlrpc"
    assert checks["odoo"]["upstream"] == {
        "url": odoo.base_url,
        "reachable": True,
        "authenticated": True,
        "version": odoo.version,
        "protocol": protocol,
    }
    assert checks["odoo"]["detail"].startswith(f"Odoo {odoo.version} at {odoo.base_url} over {protocol}: ")


def test_the_table_shows_each_upstream_on_its_own_row(
    settings_factory: Any, woo: WooCommerceSimulator
) -> None:
    result = invoke(settings_factory(**woo_settings(woo)), *UPSTREAMS)
    assert result.exit_code == 0, result.output
    assert "WooCommerce 9.9.5 (WordPress 6.8)" in result.stdout
    assert "not configured by ODOO_URL" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"woocommerce_consumer_key": "ck_" + "0" * 40},
            "woocommerce: DOWN (WooCommerce refused the consumer key (401 woocommerce_rest_cannot_view: "
            "Sorry, you cannot list resources.): "
            "check WOOCOMMERCE_CONSUMER_KEY/SECRET and the key's permissions",
        ),
        (
            {"woocommerce_consumer_secret": "cs_" + "0" * 40},
            "woocommerce: DOWN (WooCommerce refused the consumer secret "
            "(401 woocommerce_rest_authentication_error: Consumer secret is invalid.): "
            "check WOOCOMMERCE_CONSUMER_SECRET",
        ),
    ],
    ids=["unknown-key", "wrong-secret"],
)
def test_refused_woocommerce_credentials_exit_one_naming_what_to_check(
    settings_factory: Any, woo: WooCommerceSimulator, overrides: dict[str, str], expected: str
) -> None:
    result = invoke(settings_factory(**woo_settings(woo, **overrides)), "--check", "woocommerce")
    assert result.exit_code == 1
    assert expected in result.stderr


def test_refused_odoo_credentials_exit_one_naming_what_to_check(
    settings_factory: Any, odoo: OdooSimulator
) -> None:
    result = invoke(settings_factory(**odoo_settings(odoo, odoo_api_key=WRONG)), "--check", "odoo", "--json")
    assert result.exit_code == 1
    check = by_name(result)["odoo"]
    assert check["upstream"]["authenticated"] is False and check["upstream"]["reachable"] is True
    assert "ODOO_API_KEY" in check["detail"]
    assert ("ODOO_USERNAME" in check["detail"]) == (odoo.major < 19)  # JSON-2 has no login


def test_a_wrong_odoo_database_names_odoo_db(settings_factory: Any, odoo: OdooSimulator) -> None:
    result = invoke(settings_factory(**odoo_settings(odoo, odoo_db="nosuchdb")), "--check", "odoo")
    assert result.exit_code == 1
    assert f"odoo: DOWN (Odoo at {odoo.base_url} has no database 'nosuchdb': check ODOO_DB)" in result.stderr


def test_upstreams_on_a_closed_port_are_down(settings_factory: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = settings_factory(
        woocommerce_url=url, woocommerce_consumer_key=WRONG, woocommerce_consumer_secret=WRONG,
        odoo_url=url, odoo_db="prod", odoo_username="sync", odoo_api_key=WRONG,
    )  # fmt: skip
    result = invoke(settings, *UPSTREAMS)
    assert result.exit_code == 1
    assert f"odoo: DOWN (Odoo unreachable at {url}: connection refused)" in result.stderr
    assert f"woocommerce: DOWN (WooCommerce unreachable at {url}: connection refused)" in result.stderr


@pytest.mark.parametrize("name", ["odoo", "woocommerce"])
def test_a_hanging_upstream_is_down_within_the_timeout(
    settings_factory: Any, silent_port: int, name: str
) -> None:
    url = f"http://127.0.0.1:{silent_port}"
    settings = settings_factory(
        woocommerce_url=url, woocommerce_consumer_key=WRONG, woocommerce_consumer_secret=WRONG,
        odoo_url=url, odoo_db="prod", odoo_username="sync", odoo_api_key=WRONG,
        health_upstream_timeout_seconds=1.0,
    )  # fmt: skip
    started = time.monotonic()
    result = invoke(settings, "--check", name, "--json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert elapsed < 1.8, f"took {elapsed:.2f}s with a 1s budget"
    check = by_name(result)[name]
    assert check["detail"].endswith(f"unreachable at {url}: no answer within 1s")
    assert check["upstream"]["reachable"] is False


def test_a_simulator_taken_down_is_down_and_back_up_is_ok(settings_factory: Any) -> None:
    with WooCommerceSimulator(seed=7, size=5) as sim:
        settings = settings_factory(**woo_settings(sim))
        sim.faults.set(kind="down")
        assert invoke(settings, "--check", "woocommerce").exit_code == 1
        sim.faults.clear()
        assert invoke(settings, "--check", "woocommerce").exit_code == 0


class Events:
    def __init__(self) -> None:
        self.recorded: list[str] = []

    def record(self, event_type: str, **_: Any) -> None:
        self.recorded.append(event_type)


def breaker_keys(client: redis.Redis, prefix: str) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in sorted(client.scan_iter(f"{prefix}:*"))}  # type: ignore[misc]


def test_probes_leave_the_breakers_untouched(
    settings_factory: Any, redis_url: str, redis_client: redis.Redis, woo: WooCommerceSimulator
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    settings = settings_factory(
        redis_url=redis_url, **woo_settings(woo),
        odoo_url=down, odoo_db="prod", odoo_username="sync", odoo_api_key=WRONG,
    )  # fmt: skip
    events = Events()
    woo_breaker = build_breaker("woocommerce", settings, redis_client, events)
    woo_breaker.force_open("test")
    odoo_breaker = build_breaker("odoo", settings, redis_client, events)
    with pytest.raises(RetriableUpstreamError):
        odoo_breaker.call(_fail)  # one counted failure: a probe that counted would add another
    before = breaker_keys(redis_client, settings.redis_key_prefix)
    assert before
    recorded = list(events.recorded)

    result = invoke(settings, *UPSTREAMS, "--json")

    assert result.exit_code == 1
    checks = by_name(result)
    assert checks["woocommerce"]["status"] == "ok"  # asked even though its breaker is forced open
    assert checks["odoo"]["status"] == "down"
    assert breaker_keys(redis_client, settings.redis_key_prefix) == before
    assert events.recorded == recorded
    assert str(woo_breaker.state()) == "forced_open" and str(odoo_breaker.state()) == "closed"


def _fail() -> None:
    raise RetriableUpstreamError("connection refused", upstream="odoo", operation="test")
