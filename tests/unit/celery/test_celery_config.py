"""Settings -> Celery config, and the start-up check that it never loses or duplicates work."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from worker.celeryapp.app import create_app
from worker.celeryapp.config import (
    CeleryConfigError,
    build_config,
    check_config,
    config_problems,
    restore_sweep,
)


@pytest.mark.parametrize(
    ("visibility_timeout", "expected"),
    [(3600, (10, 10)), (400, (10, 10)), (120, (10, 3)), (20, (5, 1)), (8, (2, 1)), (2, (1, 1))],
    ids=["default", "sweep-capped-at-100s", "quarter-of-2min", "test-20s", "tiny", "minimum"],
)
def test_restore_sweep_is_a_quarter_of_the_visibility_timeout(
    visibility_timeout: int, expected: tuple[int, int]
) -> None:
    assert restore_sweep(visibility_timeout) == expected
    interval, throttle = expected
    assert interval * throttle <= max(1, visibility_timeout // 4) + interval


def test_config_carries_the_delivery_guarantees(settings_factory: Any) -> None:
    settings = settings_factory(
        celery_visibility_timeout=900, celery_task_time_limit=800, celery_task_soft_time_limit=700
    )
    conf = build_config(settings)
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is True
    assert conf["broker_connection_retry_on_startup"] is True
    assert conf["accept_content"] == ["json"]
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["broker_transport_options"]["visibility_timeout"] == 900
    assert conf["result_backend_transport_options"]["visibility_timeout"] == 900
    assert (conf["task_soft_time_limit"], conf["task_time_limit"]) == (700, 800)
    assert [q.name for q in conf["task_queues"]] == ["sync-incremental", "sync-full"]
    assert conf["beat_scheduler"] == "worker.celeryapp.scheduler:SourceScheduler"
    assert conf["redbeat_key_prefix"].startswith(settings.redis_key_prefix + ":")


def test_broker_defaults_to_redis_url_and_can_be_split(settings_factory: Any) -> None:
    same = build_config(settings_factory(redis_url="redis://127.0.0.1:6379/3"))
    assert same["broker_url"] == same["result_backend"] == "redis://127.0.0.1:6379/3"
    split = build_config(
        settings_factory(redis_url="redis://127.0.0.1:6379/3", celery_broker_url="redis://127.0.0.1:6379/4")
    )
    assert split["broker_url"] == "redis://127.0.0.1:6379/4"
    assert split["redbeat_redis_url"] == "redis://127.0.0.1:6379/3"


def test_a_consistent_app_passes_its_own_check(settings_factory: Any) -> None:
    settings = settings_factory()
    app = create_app(settings)
    assert config_problems(app.conf, settings) == []
    # Full and incremental runs have queues of their own, whatever the source's kind.
    for task in ("tasks.sync.sync_source", "tasks.odoo.sync_suppliers", "tasks.woocommerce.sync_products"):
        assert app.amqp.router.route({}, task, kwargs={"full": True})["queue"].name == "sync-full"
        assert app.amqp.router.route({}, task, kwargs={"full": False})["queue"].name == "sync-incremental"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"broker_transport_options": {"visibility_timeout": 60}}, "broker_transport_options"),
        ({"result_backend_transport_options": {}}, "result_backend_transport_options"),
        ({"task_time_limit": 3600}, "task_time_limit (3600)"),
        ({"task_soft_time_limit": 3300}, "task_soft_time_limit"),
        ({"worker_prefetch_multiplier": 4}, "worker_prefetch_multiplier"),
        ({"task_reject_on_worker_lost": False}, "task_reject_on_worker_lost"),
    ],
    ids=["broker-vt", "backend-vt", "hard-limit", "soft-limit", "prefetch", "reject-on-lost"],
)
def test_check_names_each_contradiction(settings_factory: Any, override: dict[str, Any], needle: str) -> None:
    settings = settings_factory()
    conf = {**build_config(settings), **override}
    with pytest.raises(CeleryConfigError, match="inconsistent Celery configuration") as info:
        check_config(conf, settings)
    assert needle in str(info.value)


def test_check_rejects_countdowns_past_the_visibility_timeout(settings_factory: Any) -> None:
    # Settings refuse these already; the app check keeps holding if settings are ever built otherwise.
    settings = settings_factory().model_copy(update={"retry_after_cap_seconds": 4000.0})
    problems = config_problems(build_config(settings), settings)
    assert problems == ["RETRY_AFTER_CAP_SECONDS (4000) must stay below the visibility timeout (3600)"]
    with pytest.raises(CeleryConfigError):
        create_app(settings)


def test_importing_settings_does_not_build_the_app() -> None:
    # A fresh interpreter: this test process has long since imported the app.
    code = (
        "import sys, worker.infra.settings, worker.infra.errors\n"
        "assert 'worker.celeryapp.app' not in sys.modules, 'app built'\n"
        "assert 'celery' not in sys.modules, 'celery imported'\n"
        "import worker\n"
        "assert type(worker.app).__name__ == 'Celery'\n"
        "assert 'worker.celeryapp.app' in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ODOO_", "WOOCOMMERCE_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
