"""The task body: redelivery cap, request numbers, the engine call, and the state the task ends in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from celery.exceptions import Ignore, Reject
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

import tasks
from models import Base, SyncRun
from tasks import DeliveryGuard, execute
from tasks.odoo import sync_suppliers
from tasks.sync import sync_source
from tasks.woocommerce import sync_products
from worker.celeryapp import deps as deps_module
from worker.celeryapp.shutdown import TimeBudget, shutdown_requested
from worker.infra.errors import SyncRunFailed
from worker.sync import Counts, RunResult, RunStatus, SyncSource
from worker.sync.requests import number_request

WOO = SyncSource.WOOCOMMERCE_PRODUCTS
ODOO = SyncSource.ODOO_SUPPLIERS
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class RecordingEventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, event_type: str, **kwargs: Any) -> None:
        self.events.append((event_type, kwargs))


class FakeRetry(Exception):
    pass


class FakeTask:
    """What ``execute`` uses of a bound task: the request, ``retry``, custom states, ``apply_async``."""

    def __init__(self, task_id: str | None, timelimit: tuple[Any, Any] = (None, None)) -> None:
        self.request = SimpleNamespace(id=task_id, timelimit=timelimit)
        self.retries: list[dict[str, Any]] = []
        self.states: list[tuple[str, dict[str, Any]]] = []
        self.sent_events: list[tuple[str, dict[str, Any]]] = []
        self.enqueued: list[dict[str, Any]] = []
        self.app = SimpleNamespace(send_task=self.send_task)

    def retry(self, **kwargs: Any) -> FakeRetry:
        self.retries.append(kwargs)
        return FakeRetry()

    def update_state(self, *, state: str, meta: dict[str, Any]) -> None:
        self.states.append((state, meta))

    def send_event(self, event_type: str, **fields: Any) -> None:
        self.sent_events.append((event_type, fields))

    def send_task(self, name: str, **options: Any) -> Any:
        self.enqueued.append({"name": name, **options})
        return SimpleNamespace(id=f"followup-{len(self.enqueued)}")


def run(
    source: SyncSource, task_id: str | None, *, full: bool = False, request: int | None = None
) -> dict[str, Any]:
    return execute(FakeTask(task_id), source, full=full, request=request)  # type: ignore[arg-type]


class FakeEngine:
    """Stands in for ``run_sync``: returns (or raises) scripted results and remembers how it was called."""

    def __init__(self, *results: RunResult | BaseException) -> None:
        self.results = list(results)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, source: SyncSource, deps: Any, **kwargs: Any) -> RunResult:
        self.calls.append({"source": source, "deps": deps, **kwargs})
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    Base.metadata.create_all(engine)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


@pytest.fixture
def env(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch, sessions: sessionmaker[Session]
) -> dict[str, Any]:
    settings = settings_factory(sync_max_redeliveries=2)
    client = fakeredis.FakeRedis()
    event_log = RecordingEventLog()
    monkeypatch.setattr(deps_module, "get_settings", lambda: settings)
    monkeypatch.setattr(deps_module, "get_redis", lambda: client)
    monkeypatch.setattr(deps_module, "get_event_log", lambda: event_log)
    monkeypatch.setattr(deps_module, "get_deps", lambda source: f"deps-for-{source}")
    monkeypatch.setattr(deps_module, "get_session_factory", lambda: sessions)
    return {"settings": settings, "redis": client, "events": event_log, "sessions": sessions}


def use_engine(monkeypatch: pytest.MonkeyPatch, *results: RunResult | BaseException) -> FakeEngine:
    engine = FakeEngine(*results)
    monkeypatch.setattr(tasks, "run_sync", engine)
    return engine


def deliveries(env: dict[str, Any], task_id: str) -> int | None:
    value = env["redis"].get(f"{env['settings'].redis_key_prefix}:deliveries:{task_id}")
    return None if value is None else int(value)


def add_run(env: dict[str, Any], **fields: Any) -> int:
    values = {
        "source": WOO.value,
        "mode": "full",
        "task_id": "earlier",
        "started_at": T0,
        "finished_at": T0,
        "status": "succeeded",
        **fields,
    }
    with env["sessions"]() as session:
        row = SyncRun(**values)
        session.add(row)
        session.commit()
        return int(row.id)


# -- a run that succeeded ------------------------------------------------------------------------


def test_success_returns_a_small_summary_and_forgets_the_message(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(7, RunStatus.SUCCEEDED, Counts(fetched=3, inserted=3)))
    summary = run(WOO, "t-1", full=True, request=12)
    assert summary == {
        "source": "woocommerce-products",
        "full": True,
        "run_id": 7,
        "status": "succeeded",
        "counts": {**Counts().as_dict(), "fetched": 3, "inserted": 3},
        "retry_after": None,
        "request": 12,
        "error": None,
    }
    (call,) = engine.calls
    assert call["deps"] == "deps-for-woocommerce-products"
    assert call["full"] is True
    assert call["task_id"] == "t-1"
    assert call["request"] == 12  # the lock records it when the request is deferred
    assert call["should_stop"]() is False
    assert callable(call["dispatch_followups"])
    assert deliveries(env, "t-1") is None


# -- states other than success -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "state"),
    [
        (RunResult(3, RunStatus.PARTIAL, Counts(fetched=5, skipped=1)), "PARTIAL"),
        (RunResult(4, RunStatus.SKIPPED_BREAKER_OPEN, retry_after=30.0), "SKIPPED"),
        (RunResult(5, RunStatus.DEFERRED, holder={"task_id": "beat"}), "DEFERRED"),
        # The breaker opened mid-run: the checkpoint stands and the next scheduled run resumes it.
        (RunResult(6, RunStatus.INTERRUPTED, retry_after=12.5, resumable=False), "INTERRUPTED"),
    ],
)
def test_an_outcome_short_of_success_ends_in_a_state_of_its_own(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, result: RunResult, state: str
) -> None:
    engine = use_engine(monkeypatch, result)
    task = FakeTask("t-3")
    with pytest.raises(Ignore):  # acked, and the state set here is the one the backend keeps
        execute(task, WOO, full=False, request=4)  # type: ignore[arg-type]
    ((stored, meta),) = task.states
    assert stored == state
    assert (meta["run_id"], meta["status"], meta["request"]) == (result.run_id, result.status.value, 4)
    assert meta["retry_after"] == result.retry_after
    assert meta["counts"] == result.counts.as_dict()
    assert task.sent_events == [(f"task-{state.lower()}", {"result": meta})]  # what Flower shows
    assert task.retries == []  # none of these is retried at once
    assert len(engine.calls) == 1
    assert deliveries(env, "t-3") is None


def test_a_failed_run_fails_the_task_naming_the_run(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, RunResult(11, RunStatus.FAILED, error="FatalUpstreamError: 401 unauthorized"))
    task = FakeTask("t-4")
    with pytest.raises(SyncRunFailed) as info:
        execute(task, WOO, full=False, request=1)  # type: ignore[arg-type]
    assert str(info.value) == "woocommerce-products run 11 failed: FatalUpstreamError: 401 unauthorized"
    assert task.states == [] and task.retries == []
    assert deliveries(env, "t-4") is None  # a failure is an outcome, not a crash to count


# -- request numbers and runs that already served them -------------------------------------------


def test_a_request_already_served_does_not_run_again(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch)
    served = add_run(env, mode="full", serves_through=5)
    assert run(WOO, "t-5", full=True, request=5) == {
        "source": "woocommerce-products",
        "full": True,
        "run_id": served,
        "status": "served",
        "request": 5,
    }
    assert run(WOO, "t-6", full=False, request=3)["run_id"] == served  # a full run serves incremental
    assert engine.calls == []
    assert deliveries(env, "t-5") is None


@pytest.mark.parametrize(
    ("run_fields", "why"),
    [
        ({"mode": "incremental", "serves_through": 9}, "an incremental run does not serve a full request"),
        ({"serves_through": 4}, "the run started before the request was made"),
        ({"status": "running", "finished_at": None, "serves_through": 9}, "not finished"),
        ({"status": "failed", "serves_through": 9}, "failed"),
        ({"status": "interrupted", "serves_through": 9}, "interrupted"),
        ({"status": "deferred", "serves_through": None}, "not a run"),
        ({"source": ODOO.value, "serves_through": 9}, "another source"),
    ],
)
def test_a_request_no_finished_run_served_runs(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, run_fields: dict[str, Any], why: str
) -> None:
    engine = use_engine(monkeypatch, RunResult(8, RunStatus.SUCCEEDED))
    add_run(env, **run_fields)
    assert run(WOO, "t-7", full=True, request=5)["status"] == "succeeded", why
    assert len(engine.calls) == 1


def test_a_message_without_a_number_keeps_the_one_its_first_delivery_got(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    number_request(env["sessions"], WOO)  # an earlier request
    use_engine(
        monkeypatch,
        RunResult(1, RunStatus.INTERRUPTED, Counts(fetched=3), resumable=True, error="stop requested"),
        RunResult(2, RunStatus.SUCCEEDED),
    )
    with pytest.raises(Reject):
        run(WOO, "beat-1")
    number_request(env["sessions"], WOO)  # a request made while the message was back in the queue
    assert run(WOO, "beat-1")["request"] == 2  # numbered at its first delivery, not at this one
    assert number_request(env["sessions"], WOO) == 4  # one number per message, not per delivery


def test_a_message_without_a_number_is_numbered_in_the_database(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, RunResult(1, RunStatus.SUCCEEDED), RunResult(2, RunStatus.SUCCEEDED))
    assert run(WOO, "beat-3")["request"] == 1
    assert run(ODOO, "beat-4")["request"] == 1  # each source counts its own
    key = f"{env['settings'].redis_key_prefix}:request:beat-3"
    assert int(env["redis"].get(key)) == 1  # kept under the task id for its redeliveries ...
    settings = env["settings"]
    ttl = settings.celery_visibility_timeout * (settings.sync_max_redeliveries + 2)
    assert 0 < env["redis"].ttl(key) <= ttl  # ... and forgotten once none can come
    with env["sessions"]() as session:
        numbered = session.execute(text("SELECT source, requests FROM sync_state ORDER BY source")).all()
    assert sorted(numbered) == [(ODOO.value, 1), (WOO.value, 1)]


def test_a_redelivery_after_a_redis_flush_is_renumbered_never_lower(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_back = RunResult(1, RunStatus.INTERRUPTED, Counts(fetched=3), resumable=True, committed=1,
                            error="stop requested")  # fmt: skip
    engine = use_engine(monkeypatch, handed_back, RunResult(2, RunStatus.SUCCEEDED))
    with pytest.raises(Reject):
        run(WOO, "beat-5")
    add_run(env, mode="incremental", serves_through=1)  # another run served request 1 meanwhile
    env["redis"].flushall()  # the number kept for the message is lost with Redis ...
    summary = run(WOO, "beat-5")
    assert summary["request"] == 2  # ... so it gets a new one: it can cost a run, never skip one
    assert summary["status"] == "succeeded"
    assert len(engine.calls) == 2


def test_a_number_lost_as_soon_as_it_was_kept_is_never_taken_for_request_zero(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(2, RunStatus.SUCCEEDED))
    for _ in range(3):
        number_request(env["sessions"], WOO)
    add_run(env, mode="incremental", serves_through=3)  # served requests 1-3, before this message
    client = env["redis"]
    real_get = client.get
    reads: list[str] = []

    def get(key: str) -> Any:
        reads.append(key)
        if len(reads) == 2:
            client.flushall()  # a failover or flush between the SET NX and this read
        return real_get(key)

    monkeypatch.setattr(client, "get", get)
    summary = run(WOO, "beat-6")
    assert summary["request"] == 4
    assert summary["status"] == "succeeded"
    assert len(engine.calls) == 1


def test_a_redelivery_served_meanwhile_is_done(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # A beat tick's first delivery was handed back; before it came back, a run started that serves it.
    engine = use_engine(
        monkeypatch,
        RunResult(1, RunStatus.INTERRUPTED, Counts(fetched=3), resumable=True, error="stop requested"),
    )
    with pytest.raises(Reject):
        run(WOO, "beat-2")
    served = add_run(env, mode="incremental", serves_through=1)
    assert run(WOO, "beat-2") == {
        "source": "woocommerce-products",
        "full": False,
        "run_id": served,
        "status": "served",
        "request": 1,
    }
    assert len(engine.calls) == 1


# -- follow-ups ----------------------------------------------------------------------------------


def test_followups_are_enqueued_with_a_fresh_request_number(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(1, RunStatus.SUCCEEDED))
    task = FakeTask("t-8")
    execute(task, WOO, full=False, request=1)  # type: ignore[arg-type]
    dispatch = engine.calls[0]["dispatch_followups"]
    dispatch(["incremental"])
    dispatch(["full", "incremental"])  # a full run serves both: one follow-up, not two
    sync = "tasks.sync.sync_source"
    assert task.enqueued == [
        {"name": sync, "kwargs": {"source": WOO, "full": False, "request": 1}, "queue": "sync-incremental"},
        {"name": sync, "kwargs": {"source": WOO, "full": True, "request": 2}, "queue": "sync-full"},
    ]


# -- handing work back ---------------------------------------------------------------------------


def test_warm_shutdown_hands_the_message_back_without_counting_a_crash(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = RunResult(1, RunStatus.INTERRUPTED, resumable=True, error="stop requested")
    use_engine(monkeypatch, *[stopped] * 5)
    for _ in range(5):
        with pytest.raises(Reject) as info:
            run(ODOO, "t-2", full=False, request=1)
        assert info.value.requeue is True
    assert deliveries(env, "t-2") == 0
    assert env["events"].events == []


def test_a_paused_host_budget_brings_the_message_back_when_the_pause_is_over(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long Retry-After: not a failure, not a hand-back to spin on, but a retry at the pause's end."""
    paused = RunResult(
        1, RunStatus.INTERRUPTED, Counts(fetched=200), retry_after=240.0, resumable=True,
        error="request budget for 'shop.example' is paused; retry after 240.0s", committed=2,
    )  # fmt: skip
    use_engine(monkeypatch, paused)
    fake = FakeTask("t-p")
    with pytest.raises(FakeRetry):
        execute(fake, WOO, full=True, request=1)  # type: ignore[arg-type]
    assert fake.retries == [{"countdown": 240.0, "max_retries": None}]


def test_a_soft_time_limit_after_progress_hands_the_message_back(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = RunResult(
        1,
        RunStatus.INTERRUPTED,
        Counts(fetched=30, inserted=27),
        resumable=True,
        error="SoftTimeLimitExceeded",
        committed=1,  # a page and its checkpoint went in before the limit
    )
    use_engine(monkeypatch, *[cut] * 5)
    for _ in range(5):
        with pytest.raises(Reject):
            run(WOO, "t-9", request=1)
    assert deliveries(env, "t-9") == 0


def test_a_time_limit_hand_back_without_progress_counts_as_a_crash(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not even one page fits in the delivery's time: handing it back forever would loop forever.
    stuck = RunResult(1, RunStatus.INTERRUPTED, resumable=True, error="SoftTimeLimitExceeded")
    engine = use_engine(monkeypatch, *[stuck] * 3)
    for count in (1, 2, 3):  # the first delivery and the two allowed redeliveries
        with pytest.raises(Reject):
            run(WOO, "t-10", request=1)
        assert deliveries(env, "t-10") == count
    with pytest.raises(SyncRunFailed, match="redelivery_limit"):
        run(WOO, "t-10", request=1)
    assert len(engine.calls) == 3


def test_a_stop_for_a_spent_time_budget_without_progress_counts_as_a_crash(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The budget ran out before the first page committed: the engine stops ("stop requested"), and
    # that is no progress either, or a page too slow for the budget would loop forever.
    monkeypatch.setattr(TimeBudget, "spent", lambda self: True)
    stopped = RunResult(1, RunStatus.INTERRUPTED, Counts(fetched=3), resumable=True, error="stop requested")
    progressed = RunResult(2, RunStatus.INTERRUPTED, resumable=True, error="stop requested", committed=2)
    use_engine(monkeypatch, stopped, stopped, progressed)
    for count in (1, 2):
        with pytest.raises(Reject):
            run(WOO, "t-14", request=1)
        assert deliveries(env, "t-14") == count
    with pytest.raises(Reject):
        run(WOO, "t-14", request=1)
    assert deliveries(env, "t-14") == 2  # a delivery that committed pages is not a crash


def test_a_time_limit_outside_the_pass_hands_the_message_back_as_a_crash(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, SoftTimeLimitExceeded())  # fired while opening or closing the run
    with pytest.raises(Reject) as info:
        run(WOO, "t-11", request=1)
    assert info.value.requeue is True
    assert deliveries(env, "t-11") == 1


def test_a_soft_time_limit_before_the_first_commit_counts_as_a_crash(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the engine returns when the limit fires while the first page's variations are fetched.
    stuck = RunResult(
        1, RunStatus.INTERRUPTED, Counts(fetched=3), resumable=True, error="SoftTimeLimitExceeded"
    )
    use_engine(monkeypatch, *[stuck] * 6)
    fates: list[str] = []
    for _ in range(6):
        try:
            run(WOO, "t-12", request=1)
        except Reject:
            fates.append("handed back")
        except SyncRunFailed:
            fates.append("dropped")
            break
    assert fates == ["handed back"] * 3 + ["dropped"]


def test_the_run_stops_when_the_time_budget_is_spent_or_the_worker_shuts_down(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    budgets: list[tuple[Any, float]] = []

    def for_task(request: Any, default_soft_limit: float) -> TimeBudget:
        budgets.append((request.timelimit, default_soft_limit))
        return TimeBudget(100, clock=lambda: now[0])

    monkeypatch.setattr(TimeBudget, "for_task", staticmethod(for_task))
    engine = use_engine(monkeypatch, RunResult(1, RunStatus.SUCCEEDED))
    execute(FakeTask("t-13", timelimit=(None, 100)), WOO, full=False, request=1)  # type: ignore[arg-type]
    assert budgets == [((None, 100), env["settings"].celery_task_soft_time_limit)]
    should_stop = engine.calls[0]["should_stop"]
    assert should_stop() is False
    now[0] = 80.0  # the soft limit less its margin
    assert should_stop() is True
    now[0] = 0.0
    monkeypatch.setattr(tasks, "shutdown_requested", lambda: True)
    assert should_stop() is True


# -- redeliveries --------------------------------------------------------------------------------


def test_crash_redeliveries_are_capped(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    engine = use_engine(monkeypatch)
    guard = tasks._guard()
    # Three deliveries started and never finished: the first plus the two allowed redeliveries.
    for _ in range(3):
        guard.begin("t-5")
    with pytest.raises(SyncRunFailed) as info:
        run(WOO, "t-5", full=False)
    assert "woocommerce-products" in str(info.value) and "redelivery_limit" in str(info.value)
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
    assert run(WOO, "t-6", full=False, request=1)["status"] == "succeeded"
    assert len(engine.calls) == 1


def test_a_redelivery_that_meets_its_dead_runs_lock_retries_after_the_ttl(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_engine(monkeypatch, RunResult(5, RunStatus.DEFERRED))
    tasks._guard().begin("t-7")  # the first delivery crashed
    task = FakeTask("t-7")
    with pytest.raises(FakeRetry):
        execute(task, WOO, full=True, request=1)  # type: ignore[arg-type]
    assert task.retries == [{"countdown": env["settings"].sync_lock_ttl_seconds + 1, "max_retries": None}]
    assert task.states == []
    assert deliveries(env, "t-7") == 1  # the deferral itself is not counted as a crash


def test_a_first_delivery_that_meets_a_running_sync_is_deferred_not_retried(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = {"host": "worker-2", "pid": 41, "task_id": "t-7", "mode": "full"}
    use_engine(monkeypatch, RunResult(6, RunStatus.DEFERRED, holder=holder, coalesced=True))
    task = FakeTask("t-8")
    with pytest.raises(Ignore):
        execute(task, WOO, full=False, request=1)  # type: ignore[arg-type]
    assert [state for state, _ in task.states] == ["DEFERRED"]
    ((_, meta),) = task.states
    assert (meta["holder"], meta["coalesced"]) == (holder, True)  # Flower shows who holds the source
    assert task.retries == []
    assert deliveries(env, "t-8") is None


# -- time budget ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_leaves_a_fifth_of_the_soft_limit_for_the_page_in_flight() -> None:
    clock = Clock()
    budget = TimeBudget(100, clock=clock)
    assert budget.seconds == 80
    clock.now += 79.9
    assert not budget.spent()
    clock.now += 0.1
    assert budget.spent()


def test_time_budget_margin_is_at_most_a_minute() -> None:
    clock = Clock()
    budget = TimeBudget(3000, clock=clock)
    assert budget.seconds == 2940
    clock.now += 2939
    assert not budget.spent()
    clock.now += 1
    assert budget.spent()


@pytest.mark.parametrize(
    ("request_", "seconds"),
    [
        (SimpleNamespace(timelimit=(None, 100)), 80),  # a per-call soft limit wins
        (SimpleNamespace(timelimit=(600, 100.0)), 80),
        (SimpleNamespace(timelimit=(600, None)), 2940),  # only a hard limit: the default soft one
        (SimpleNamespace(timelimit=(None, None)), 2940),
        (SimpleNamespace(timelimit=None), 2940),
        (SimpleNamespace(), 2940),  # called in process
    ],
)
def test_time_budget_of_a_delivery(request_: Any, seconds: float) -> None:
    budget = TimeBudget.for_task(request_, 3000)
    assert budget.seconds == seconds
    assert not budget.spent()


def test_time_budget_starts_when_it_is_made() -> None:
    clock = Clock()
    clock.now = 5000.0
    budget = TimeBudget(10, clock=clock)
    assert budget.started == 5000.0
    clock.now += 7.9
    assert not budget.spent()
    clock.now += 0.1
    assert budget.spent()


def test_a_hand_back_after_the_counter_expired_leaves_no_credit_of_crashes() -> None:
    client = fakeredis.FakeRedis()
    guard = DeliveryGuard(client, "p", max_redeliveries=1, ttl_seconds=50)
    assert guard.begin("x") == 1
    client.delete("p:deliveries:x")  # the counter expired while the delivery ran
    guard.handed_back("x")
    assert int(client.get("p:deliveries:x")) == 0  # not -1: that would allow one crash too many
    assert 0 < client.ttl("p:deliveries:x") <= 50
    assert [guard.begin("x") for _ in range(2)] == [1, 2]
    assert guard.over_limit(3) and not guard.over_limit(2)


def test_a_hand_back_undoes_the_count_of_its_own_delivery() -> None:
    client = fakeredis.FakeRedis()
    guard = DeliveryGuard(client, "p", max_redeliveries=1, ttl_seconds=50)
    assert guard.begin("x") == 1
    assert guard.begin("x") == 2
    guard.handed_back("x")
    assert int(client.get("p:deliveries:x")) == 1
    assert 0 < client.ttl("p:deliveries:x") <= 50


def test_guard_counter_expires() -> None:
    client = fakeredis.FakeRedis()
    guard = DeliveryGuard(client, "p", max_redeliveries=1, ttl_seconds=50)
    assert guard.begin("x") == 1
    assert 0 < client.ttl("p:deliveries:x") <= 50
    assert not guard.over_limit(2)
    assert guard.over_limit(3)


def test_tasks_are_registered_with_their_delivery_options() -> None:
    for task, name in (
        (sync_source, "tasks.sync.sync_source"),
        (sync_suppliers, "tasks.odoo.sync_suppliers"),
        (sync_products, "tasks.woocommerce.sync_products"),
    ):
        assert task.name == name
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True
        assert task.ignore_result is False


def test_each_in_process_call_without_a_number_is_a_new_request(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(1, RunStatus.SUCCEEDED), RunResult(2, RunStatus.SUCCEEDED))
    first = sync_products()
    add_run(env, mode="incremental", serves_through=first["request"])  # the row the first run left
    second = sync_products()
    assert second["status"] == "succeeded"
    assert second["request"] > first["request"]
    assert len(engine.calls) == 2


def test_task_called_in_process_passes_full_and_request(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = use_engine(monkeypatch, RunResult(2, RunStatus.SUCCEEDED), RunResult(3, RunStatus.SUCCEEDED))
    summary = sync_products(full=True, request=4)
    assert (summary["run_id"], summary["request"]) == (2, 4)
    assert sync_suppliers(request=5)["source"] == ODOO.value
    first, second = engine.calls
    assert (first["source"], first["full"], first["task_id"]) == (WOO, True, None)
    assert (second["source"], second["full"]) == (ODOO, False)


def test_shutdown_requested_outside_a_task_is_false() -> None:
    assert shutdown_requested() is False


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (deps_module.SourceDisabled("source 'shop-a' is disabled"), "SKIPPED"),
        (deps_module.SourceMisconfigured("source 'shop-a': url: plain http"), "FAILURE"),
    ],
    ids=["disabled", "misconfigured"],
)
def test_a_request_for_an_unusable_source_is_dropped_with_its_follow_ups_and_said_once(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, error: Exception, state: str
) -> None:
    def unusable(source: str) -> Any:
        raise error

    monkeypatch.setattr(deps_module, "get_deps", unusable)
    engine = use_engine(monkeypatch)
    followups = f"{env['settings'].redis_key_prefix}:{{shop-a}}:followups"
    env["redis"].hset(followups, "incremental", 3)  # a request that met a run before the source was disabled
    task = FakeTask("t-9")
    with pytest.raises(
        Ignore if state == "SKIPPED" else SyncRunFailed, match=None if state == "SKIPPED" else "plain"
    ):
        execute(task, "shop-a", full=False)  # type: ignore[arg-type]
    assert engine.calls == []  # nothing ran, nothing was numbered
    assert not env["redis"].exists(followups)  # the sweeper will not send it again every minute
    ((event_type, fields),) = env["events"].events
    assert (event_type, fields["aggregate_id"]) == ("sync.source_unusable", "shop-a")
    assert [s for s, _ in task.states] == (["SKIPPED"] if state == "SKIPPED" else [])
