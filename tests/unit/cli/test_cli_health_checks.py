"""How check outcomes become statuses, lines and an exit code (the services themselves: integration)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from worker.cli import health as health_module
from worker.cli import main
from worker.cli.health import CheckFailed, Finding, Skipped, run_check
from worker.cli.output import CliState
from worker.infra.settings import Settings


def test_a_raising_check_is_down_with_its_message(settings_factory: Any) -> None:
    settings = settings_factory()

    def broken(_: Settings) -> str:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    result = run_check("redis", broken, settings)
    assert result.status == "down"
    assert result.line() == "redis: DOWN (Error 111 connecting to 127.0.0.1:6390. Connection refused.)"
    assert result.latency_ms >= 0


def test_a_skipped_check_is_not_a_failure(settings_factory: Any) -> None:
    def absent(_: Settings) -> str:
        raise Skipped("breaker module not installed")

    assert run_check("breakers", absent, settings_factory()).status == "skipped"


def test_secrets_in_error_messages_are_scrubbed(settings_factory: Any) -> None:
    settings = settings_factory(redis_url="redis://:topsecretpw@127.0.0.1:6390/0")

    def leaky(s: Settings) -> str:
        raise RuntimeError(f"cannot reach {s.redis_url}")

    result = run_check("redis", leaky, settings)
    assert "topsecretpw" not in result.detail
    assert "***" in result.detail


@pytest.fixture
def fake_checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    checks: dict[str, Any] = {"database": lambda s: "fine", "redis": lambda s: "fine"}
    monkeypatch.setattr(health_module, "CHECKS", checks)
    return checks


def test_exit_status_is_one_when_any_check_is_down(
    settings_factory: Any, fake_checks: dict[str, Any]
) -> None:
    def down(_: Settings) -> str:
        raise OSError("Connection refused")

    fake_checks["redis"] = down
    result = CliRunner().invoke(main, ["health", "--json"], obj=CliState(settings=settings_factory()))
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["healthy"] is False
    assert [c["status"] for c in body["checks"]] == ["ok", "down"]


def test_exit_status_is_zero_when_all_checks_pass(settings_factory: Any, fake_checks: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["health"], obj=CliState(settings=settings_factory()))
    assert result.exit_code == 0, result.output
    assert "database" in result.stdout
    assert "DOWN" not in result.output


def test_bad_configuration_exits_two_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ODOO_URL", "https://odoo.internal.test")
    result = CliRunner().invoke(main, ["health"])
    assert result.exit_code == 2
    assert "ODOO_API_KEY" in result.output


@pytest.mark.parametrize(
    ("name", "variable"),
    [("odoo", "ODOO_URL"), ("woocommerce", "WOOCOMMERCE_URL")],
    ids=["odoo", "woocommerce"],
)
def test_an_upstream_that_is_not_configured_is_skipped(
    settings_factory: Any, name: str, variable: str
) -> None:
    result = run_check(name, health_module.CHECKS[name], settings_factory())
    assert result.status == "skipped"
    assert result.detail.startswith(f"not configured by {variable}")
    assert "syncworker sources test NAME" in result.detail  # where a stored source is probed
    assert result.upstream is None


def test_upstream_facts_reach_json_scrubbed_and_only_on_upstream_checks(
    settings_factory: Any, fake_checks: dict[str, Any]
) -> None:
    secret = "cs_not-for-your-eyes-0123456789"
    settings = settings_factory(
        woocommerce_url="https://shop.internal.test",
        woocommerce_consumer_key="ck_0123456789abcdef",
        woocommerce_consumer_secret=secret,
    )
    facts = {"url": "https://shop.internal.test", "reachable": True, "authenticated": False, "note": secret}

    def refused(_: Settings) -> Finding:
        raise CheckFailed(f"WooCommerce refused the consumer key {secret}", facts)

    fake_checks["odoo"] = lambda s: Finding("Odoo 17.0 at https://odoo.internal.test", {"version": "17.0"})
    fake_checks["woocommerce"] = refused
    result = CliRunner().invoke(main, ["health", "--json"], obj=CliState(settings=settings))
    assert result.exit_code == 1
    assert secret not in result.output
    by_name = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert "upstream" not in by_name["database"] and "upstream" not in by_name["redis"]
    assert by_name["odoo"] == {
        "name": "odoo",
        "status": "ok",
        "latency_ms": by_name["odoo"]["latency_ms"],
        "detail": "Odoo 17.0 at https://odoo.internal.test",
        "upstream": {"version": "17.0"},
    }
    assert by_name["woocommerce"]["status"] == "down"
    assert by_name["woocommerce"]["detail"] == "WooCommerce refused the consumer key ***"
    assert by_name["woocommerce"]["upstream"] == {**facts, "note": "***"}
