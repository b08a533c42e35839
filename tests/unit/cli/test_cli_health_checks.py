"""How check outcomes become statuses, lines and an exit code (the services themselves: integration)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from worker.cli import health as health_module
from worker.cli import main
from worker.cli.health import Skipped, run_check
from worker.cli.output import CliState
from worker.settings import Settings


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
