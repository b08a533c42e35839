"""The task body: redelivery cap, the engine call, and the message's fate afterwards."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from celery.exceptions import Reject

import tasks
from tasks import DeliveryGuard, execute
from tasks.odoo import sync_suppliers
from tasks.woocommerce import sync_products
from worker import deps as deps_module
from worker.shutdown import shutdown_requested
from worker.sync import Counts, RunResult, RunStatus, SyncSource


class RecordingEventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, event_type: str, **kwargs: Any) -> None:
        self.events.append((event_type, kwargs))


class FakeRetry(Exception):
    pass


class FakeTask:
    """What ``execute`` uses of a bound task: the request's id and ``retry``."""

    def __init__(self, task_id: str | None) -> None:
        self.request = SimpleNamespace(id=task_id)
        self.retries: list[dict[str, Any]] = []

    def retry(self, **kwargs: Any) -> FakeRetry:
        self.retries.append(kwargs)
        return FakeRetry()


def run(source: SyncSource, task_id: str | None, *, full: bool = False) -> dict[str, Any]:
    return execute(FakeTask(task_id), source, full=full)  # type: ignore[arg-type]


class FakeEngine:
    """Stands in for ``run_sync``: returns scripted results and remembers how it was called."""

    def __init__(self, *results: RunResult) -> None:
        self.results = list(results)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, source: SyncSource, deps: Any, **kwargs: Any) -> RunResult:
        self.calls.append({"source": source, "deps": deps, **kwargs})
        return self.results.pop(0)


@pytest.fixture
def env(settings_factory: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    settings = settings_factory(sync_max_redeliveries=2)
    client = fakeredis.FakeRedis()
    event_log = RecordingEventLog()
    monkeypatch.setattr(deps_module, "get_settings", lambda: settings)
    monkeypatch.setattr(deps_module, "get_redis", lambda: client)
    monkeypatch.setattr(deps_module, "get_event_log", lambda: event_log)
    monkeypatch.setattr(deps_module, "get_deps", lambda source: f"deps-for-{source}")
    return {"settings": settings, "redis": client, "events": event_log}


def use_engine(monkeypatch: pytest.MonkeyPatch, *results: RunResult) -> FakeEngine:
    engine = FakeEngine(*results)
    monkeypatch.setattr(tasks, "run_sync", engine)
    return engine


def deliveries(env: dict[str, Any], task_id: str) -> int | None:
    value = env["redis"].get(f"{env['settings'].redis_key_prefix}:deliveries:{task_id}")
    return None if value is None else int(value)


def test_success_returns_a_small_summary_and_forgets_the_message(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(7, RunStatus.SUCCEEDED, Counts(fetched=3, inserted=3)))
    summary = run(SyncSource.WOOCOMMERCE_PRODUCTS, "t-1", full=True)
    assert summary == {
        "source": "woocommerce-products",
        "full": True,
        "run_id": 7,
        "status": "succeeded",
        "counts": {**Counts().as_dict(), "fetched": 3, "inserted": 3},
        "retry_after": None,
    }
    (call,) = engine.calls
    assert call["deps"] == "deps-for-woocommerce-products"
    assert call["full"] is True
    assert call["task_id"] == "t-1"
    assert call["should_stop"] is shutdown_requested
    assert deliveries(env, "t-1") is None


def test_warm_shutdown_hands_the_message_back_without_counting_a_crash(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, *[RunResult(1, RunStatus.INTERRUPTED, resumable=True)] * 5)
    for _ in range(5):
        with pytest.raises(Reject) as info:
            run(SyncSource.ODOO_SUPPLIERS, "t-2", full=False)
        assert info.value.requeue is True
    assert deliveries(env, "t-2") == 0
    assert env["events"].events == []


def test_an_interruption_that_cannot_resume_is_acked(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The breaker opened mid-run: the checkpoint stands and the next scheduled run resumes it.
    use_engine(monkeypatch, RunResult(3, RunStatus.INTERRUPTED, retry_after=12.5, resumable=False))
    summary = run(SyncSource.ODOO_SUPPLIERS, "t-3", full=False)
    assert (summary["status"], summary["retry_after"]) == ("interrupted", 12.5)


def test_breaker_open_skip_is_returned_not_retried(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(4, RunStatus.SKIPPED_BREAKER_OPEN, retry_after=30.0))
    summary = run(SyncSource.WOOCOMMERCE_PRODUCTS, "t-4", full=False)
    assert summary["status"] == "skipped_breaker_open"
    assert len(engine.calls) == 1


def test_crash_redeliveries_are_capped(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    engine = use_engine(monkeypatch)
    guard = tasks._guard()
    # Three deliveries started and never finished: the first plus the two allowed redeliveries.
    for _ in range(3):
        guard.begin("t-5")
    summary = run(SyncSource.WOOCOMMERCE_PRODUCTS, "t-5", full=False)
    assert summary["status"] == "redelivery_limit"
    assert engine.calls == []
    ((event_type, kwargs),) = env["events"].events
    assert event_type == "sync.redelivery_limit"
    assert kwargs["correlation_id"] == "t-5"
    assert kwargs["payload"]["deliveries"] == 4
    assert deliveries(env, "t-5") is None


def test_last_allowed_redelivery_still_runs(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    engine = use_engine(monkeypatch, RunResult(9, RunStatus.SUCCEEDED))
    guard = tasks._guard()
    for _ in range(2):
        guard.begin("t-6")
    assert run(SyncSource.WOOCOMMERCE_PRODUCTS, "t-6", full=False)["status"] == "succeeded"
    assert len(engine.calls) == 1


def test_a_redelivery_that_meets_its_dead_runs_lock_retries_after_the_ttl(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, RunResult(5, RunStatus.SKIPPED_ALREADY_RUNNING))
    tasks._guard().begin("t-7")  # the first delivery crashed
    task = FakeTask("t-7")
    with pytest.raises(FakeRetry):
        execute(task, SyncSource.WOOCOMMERCE_PRODUCTS, full=True)  # type: ignore[arg-type]
    assert task.retries == [{"countdown": env["settings"].sync_lock_ttl_seconds + 1, "max_retries": None}]
    assert deliveries(env, "t-7") == 1  # the skip itself is not counted as a crash


def test_a_first_delivery_that_meets_a_running_sync_is_skipped(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, RunResult(6, RunStatus.SKIPPED_ALREADY_RUNNING))
    task = FakeTask("t-8")
    summary = execute(task, SyncSource.WOOCOMMERCE_PRODUCTS, full=False)  # type: ignore[arg-type]
    assert summary["status"] == "skipped_already_running"
    assert task.retries == []
    assert deliveries(env, "t-8") is None


def test_guard_counter_expires() -> None:
    client = fakeredis.FakeRedis()
    guard = DeliveryGuard(client, "p", max_redeliveries=1, ttl_seconds=50)
    assert guard.begin("x") == 1
    assert 0 < client.ttl("p:deliveries:x") <= 50
    assert not guard.over_limit(2)
    assert guard.over_limit(3)


def test_tasks_are_registered_with_their_delivery_options() -> None:
    for task, name, queue in (
        (sync_suppliers, "tasks.odoo.sync_suppliers", "odoo"),
        (sync_products, "tasks.woocommerce.sync_products", "woocommerce"),
    ):
        assert task.name == name
        assert task.queue == queue
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True
        assert task.ignore_result is False


def test_task_called_in_process_passes_only_full(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(2, RunStatus.SUCCEEDED))
    assert sync_products(full=True)["run_id"] == 2
    (call,) = engine.calls
    assert call["full"] is True
    assert call["task_id"] is None


def test_shutdown_requested_outside_a_task_is_false() -> None:
    assert shutdown_requested() is False
