"""`syncworker sync --wait`: the request is numbered, and the run that serves it is followed to its end
(this request's own run, the follow-up it was deferred to, or the continuation of a handed-back run)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models import Base, SyncRun
from worker.cli.sync import (
    EXIT_BREAKER_OPEN,
    EXIT_FAILED,
    EXIT_PARTIAL,
    Request,
    exit_code,
    send_request,
    serving_run,
    wait_for,
)
from worker.sync.requests import number_request
from worker.sync.runs import close_stale_runs
from worker.sync.sources import SyncSource

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
WOO = SyncSource.WOOCOMMERCE_PRODUCTS


class FakeResult:
    def __init__(self, state: str, result: Any = None) -> None:
        self.state = state
        self.result = result

    def ready(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE")

    def successful(self) -> bool:
        return self.state == "SUCCESS"


class ScriptedApp:
    """Each poll sees the next scripted task state; ``on_poll`` changes the run rows in between."""

    def __init__(self, *steps: tuple[FakeResult, Callable[[], Any] | None]) -> None:
        self.steps = list(steps)
        self.asked: list[str] = []

    def AsyncResult(self, task_id: str) -> FakeResult:
        self.asked.append(task_id)
        result, on_poll = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if on_poll is not None:
            on_poll()
        return result


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def sessions() -> Iterator[sessionmaker[Session]]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


def add_run(sessions: sessionmaker[Session], **fields: Any) -> int:
    values = {
        "source": WOO.value,
        "mode": "full",
        "task_id": "t1",
        "started_at": T0,
        "status": "running",
        **fields,
    }
    with sessions() as session:
        run = SyncRun(**values)
        session.add(run)
        session.commit()
        return int(run.id)


def finish(sessions: sessionmaker[Session], run_id: int, status: str, inserted: int, **details: Any) -> None:
    with sessions() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        run.status, run.inserted, run.finished_at = status, inserted, T0
        run.details = {"resumable": False, **details}
        session.commit()


def follow(
    app: ScriptedApp, sessions: sessionmaker[Session], request: Request, timeout: float = 60
) -> tuple[str | None, list[str], FakeClock]:
    clock, lines = FakeClock(), []
    status = wait_for(
        app, "t1", sessions, request, timeout=timeout, show=lines.append, clock=clock, sleep=clock.sleep
    )
    return status, lines, clock


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("succeeded", 0),
        ("partial", EXIT_PARTIAL),
        ("skipped_breaker_open", EXIT_BREAKER_OPEN),
        ("interrupted", EXIT_BREAKER_OPEN),  # a run stopped for good by a breaker that opened mid-run
        ("failed", EXIT_FAILED),
        ("redelivery_limit", EXIT_FAILED),
        # No longer a success: --wait follows the run that serves the request instead.
        ("skipped_already_running", EXIT_FAILED),
        ("deferred", EXIT_FAILED),
        ("something-new", EXIT_FAILED),
    ],
)
def test_exit_codes(status: str, code: int) -> None:
    assert exit_code(status) == code


def test_progress_follows_the_run_serving_the_request(sessions: sessionmaker[Session]) -> None:
    app = ScriptedApp(
        (FakeResult("PENDING"), None),
        (FakeResult("STARTED"), lambda: add_run(sessions, serves_through=3)),
        (FakeResult("SUCCESS", {"status": "succeeded"}), lambda: finish(sessions, 1, "succeeded", 188)),
    )
    status, lines, _ = follow(app, sessions, Request(WOO, 3, True))
    assert status == "succeeded"
    assert lines == [
        "task pending, no run serving the request yet",
        "run 1 (full) running since 12:00:00 UTC: fetched 0, inserted 0, updated 0",
        "run 1 (full) succeeded: fetched 0, inserted 188, updated 0, unchanged 0, skipped 0, failed 0",
    ]
    assert app.asked[0] == "t1"


def test_a_deferred_request_follows_the_followup_run(sessions: sessionmaker[Session]) -> None:
    # Request 5 met run 1 (which serves requests up to 4): it was deferred, and the follow-up run
    # that run 1 enqueued at its end (serving up to 6) is the one that serves it.
    holder = add_run(sessions, mode="incremental", task_id="beat", serves_through=4)
    app = ScriptedApp(
        (FakeResult("PENDING"), None),
        (
            FakeResult("DEFERRED"),
            lambda: add_run(sessions, mode="incremental", status="deferred", finished_at=T0),
        ),
        (FakeResult("DEFERRED"), lambda: finish(sessions, holder, "succeeded", 10)),
        (
            FakeResult("DEFERRED"),
            lambda: add_run(sessions, mode="incremental", task_id="f", serves_through=6),
        ),
        (FakeResult("DEFERRED"), lambda: finish(sessions, 3, "partial", 2)),
    )
    status, lines, _ = follow(app, sessions, Request(WOO, 5, False))
    assert status == "partial"
    assert exit_code(status) == EXIT_PARTIAL
    assert lines == [
        "task pending, no run serving the request yet",
        "task deferred, no run serving the request yet",  # neither the holder nor the deferred row
        "run 3 (incremental) running since 12:00:00 UTC: fetched 0, inserted 0, updated 0",
        "run 3 (incremental) partial: fetched 0, inserted 2, updated 0, unchanged 0, skipped 0, failed 0",
    ]


def test_a_resumable_interruption_is_passed_over_for_its_continuation(
    sessions: sessionmaker[Session],
) -> None:
    first = add_run(sessions, serves_through=2)
    app = ScriptedApp(
        (FakeResult("STARTED"), None),
        (FakeResult("STARTED"), lambda: finish(sessions, first, "interrupted", 100, resumable=True)),
        (FakeResult("STARTED"), lambda: add_run(sessions, serves_through=3)),
        (FakeResult("SUCCESS"), lambda: finish(sessions, 2, "succeeded", 88)),
    )
    status, lines, _ = follow(app, sessions, Request(WOO, 2, True))
    assert status == "succeeded"
    assert lines == [
        "run 1 (full) running since 12:00:00 UTC: fetched 0, inserted 0, updated 0",
        "task started, no run serving the request yet",  # handed back: its continuation comes next
        "run 2 (full) running since 12:00:00 UTC: fetched 0, inserted 0, updated 0",
        "run 2 (full) succeeded: fetched 0, inserted 88, updated 0, unchanged 0, skipped 0, failed 0",
    ]


def test_an_interruption_that_is_not_resumable_is_the_outcome(sessions: sessionmaker[Session]) -> None:
    run_id = add_run(sessions, serves_through=2)
    finish(sessions, run_id, "interrupted", 4, retry_after=30.0)  # the breaker opened mid-run
    summary = {"run_id": run_id, "status": "interrupted", "request": 2}
    status, _, _ = follow(
        ScriptedApp((FakeResult("INTERRUPTED", summary), None)), sessions, Request(WOO, 2, True)
    )
    assert status == "interrupted"
    assert exit_code(status) == EXIT_BREAKER_OPEN


def test_an_incremental_run_does_not_serve_a_full_request(sessions: sessionmaker[Session]) -> None:
    finish(sessions, add_run(sessions, mode="incremental", serves_through=9), "succeeded", 1)
    request = Request(WOO, 4, True)
    assert serving_run(sessions, request) is None
    full = add_run(sessions, mode="full", serves_through=9)
    assert serving_run(sessions, request).id == full  # type: ignore[union-attr]
    # ... while a full run serves an incremental request.
    assert serving_run(sessions, Request(WOO, 4, False)).id == 1  # type: ignore[union-attr]


def test_runs_started_before_the_request_or_of_another_source_do_not_serve_it(
    sessions: sessionmaker[Session],
) -> None:
    finish(sessions, add_run(sessions, serves_through=6), "succeeded", 1)
    finish(sessions, add_run(sessions, source=SyncSource.ODOO_SUPPLIERS.value, serves_through=9), "failed", 0)
    assert serving_run(sessions, Request(WOO, 7, False)) is None
    assert serving_run(sessions, Request(SyncSource.ODOO_SUPPLIERS, 7, False)).id == 2  # type: ignore[union-attr]


def test_a_later_run_that_served_the_request_answers_it(sessions: sessionmaker[Session]) -> None:
    finish(sessions, add_run(sessions, serves_through=5), "failed", 0)
    finish(sessions, add_run(sessions, serves_through=8), "succeeded", 3)
    status, lines, _ = follow(
        ScriptedApp((FakeResult("FAILURE", RuntimeError("x")), None)), sessions, Request(WOO, 5, False)
    )
    assert status == "succeeded"  # the mirror is as fresh as the request asked: that is the answer
    assert lines[0].startswith("run 2 (full) succeeded")


def test_the_own_tasks_failure_answers_while_no_run_served_the_request(
    sessions: sessionmaker[Session],
) -> None:
    finish(sessions, add_run(sessions, serves_through=5), "failed", 0)
    add_run(sessions, serves_through=8)  # a later run is still going: the request's own run failed
    status, _, _ = follow(
        ScriptedApp((FakeResult("FAILURE", RuntimeError("x")), None)), sessions, Request(WOO, 5, False)
    )
    assert status == "failed"


def test_a_failed_task_with_no_run_is_a_failure(sessions: sessionmaker[Session]) -> None:
    app = ScriptedApp((FakeResult("FAILURE", RuntimeError("db down")), None))
    status, lines, _ = follow(app, sessions, Request(WOO, 1, False))
    assert status == "failed"
    assert lines == ["task failure, no run serving the request yet"]


def test_a_message_dropped_at_the_redelivery_limit_says_so(sessions: sessionmaker[Session]) -> None:
    error = RuntimeError(
        "woocommerce-products: dropped after 7 deliveries that did not finish (redelivery_limit)"
    )
    status, _, _ = follow(ScriptedApp((FakeResult("FAILURE", error), None)), sessions, Request(WOO, 1, False))
    assert status == "redelivery_limit"
    assert exit_code(status) == EXIT_FAILED


def test_a_task_failure_does_not_hide_a_run_that_served_the_request(
    sessions: sessionmaker[Session],
) -> None:
    finish(sessions, add_run(sessions, serves_through=1), "succeeded", 4)
    app = ScriptedApp((FakeResult("FAILURE", RuntimeError("a later delivery")), None))
    status, _, _ = follow(app, sessions, Request(WOO, 1, True))
    assert status == "succeeded"


def test_gives_up_after_the_timeout(sessions: sessionmaker[Session]) -> None:
    add_run(sessions, serves_through=1)
    status, _, clock = follow(
        ScriptedApp((FakeResult("STARTED"), None)), sessions, Request(WOO, 1, False), timeout=5
    )
    assert status is None
    assert clock.now >= 5


def test_a_run_closed_by_its_successor_is_passed_over(sessions: sessionmaker[Session]) -> None:
    crashed = add_run(sessions, serves_through=2)  # its worker was killed mid-run
    with sessions() as session, session.begin():
        assert close_stale_runs(session.connection(), WOO, now=T0) == [crashed]  # what the redelivery does
    add_run(sessions, serves_through=3)  # the redelivery's own run: it serves the request
    app = ScriptedApp(
        (FakeResult("STARTED"), None),
        (FakeResult("SUCCESS"), lambda: finish(sessions, 2, "succeeded", 9)),
    )
    status, _, _ = follow(app, sessions, Request(WOO, 2, True))
    assert status == "succeeded"


def test_send_request_numbers_the_request_in_the_database_and_sends_it_with_the_message(
    sessions: sessionmaker[Session],
) -> None:
    sent: list[dict[str, Any]] = []

    class App:
        def send_task(self, name: str, **kwargs: Any) -> Any:
            sent.append({"name": name, **kwargs})
            return SimpleNamespace(id=f"task-{len(sent)}")

    number_request(sessions, WOO)  # a beat tick numbered before
    task_id, request = send_request(App(), sessions, WOO, full=True)  # type: ignore[arg-type]
    assert (task_id, request) == ("task-1", Request(WOO, 2, True))
    # The message names the source only, and goes to the full runs' queue.
    kwargs = {"source": WOO, "full": True, "request": 2}
    assert sent == [{"name": "tasks.sync.sync_source", "kwargs": kwargs, "queue": "sync-full"}]
    _, again = send_request(App(), sessions, WOO, full=False)  # type: ignore[arg-type]
    assert sent[-1]["queue"] == "sync-incremental"
    assert again == Request(WOO, 3, False)
    _, odoo = send_request(App(), sessions, "odoo-suppliers", full=False)  # type: ignore[arg-type]
    assert odoo == Request(SyncSource.ODOO_SUPPLIERS, 1, False)  # each source counts its own


def test_send_request_numbers_nothing_when_the_database_is_away() -> None:
    # The number must be committed before the message exists: without it, nothing is sent.
    engine = create_engine("sqlite://")  # no tables: the numbering fails
    sent: list[str] = []

    class App:
        def send_task(self, name: str, **kwargs: Any) -> Any:
            sent.append(name)
            return SimpleNamespace(id="never")

    with pytest.raises(OperationalError, match="no such table"):
        send_request(App(), sessionmaker(bind=engine), WOO, full=True)  # type: ignore[arg-type]
    assert sent == []
    engine.dispose()


# -- a failed run that covers the request --------------------------------------------------------


@pytest.mark.parametrize("state", ["PENDING", "RECEIVED", "STARTED", "RETRY"])
def test_a_failed_covering_run_does_not_answer_a_request_whose_own_task_is_still_to_run(
    sessions: sessionmaker[Session], state: str
) -> None:
    # A beat tick's run started after request 5 was made, and failed; the request's own task has not
    # run yet. Its own run answers it, not the beat tick's failure.
    beat = add_run(sessions, mode="incremental", task_id="beat", serves_through=6)
    finish(sessions, beat, "failed", 0)
    own: list[int] = []

    def own_run_starts() -> None:
        own.append(add_run(sessions, mode="incremental", serves_through=7))

    app = ScriptedApp(
        (FakeResult(state), None),
        (FakeResult(state), None),
        (FakeResult("STARTED"), own_run_starts),
        (FakeResult("STARTED"), lambda: finish(sessions, own[0], "succeeded", 3)),
        (FakeResult("SUCCESS", {"run_id": 2, "status": "succeeded"}), None),
    )
    status, lines, _ = follow(app, sessions, Request(WOO, 5, False))
    assert status == "succeeded"
    assert lines[0].startswith("run 1 (incremental) failed")  # shown, but not the answer
    assert lines[-1].startswith("run 2 (incremental) succeeded")


def test_the_own_run_failing_after_a_failed_covering_run_is_the_answer(
    sessions: sessionmaker[Session],
) -> None:
    finish(sessions, add_run(sessions, mode="incremental", task_id="beat", serves_through=6), "failed", 0)
    app = ScriptedApp(
        (FakeResult("STARTED"), lambda: add_run(sessions, mode="incremental", serves_through=7)),
        (FakeResult("STARTED"), lambda: finish(sessions, 2, "failed", 0)),
        (FakeResult("FAILURE", RuntimeError("woocommerce-products run 2 failed")), None),
    )
    status, _, _ = follow(app, sessions, Request(WOO, 5, False))
    assert status == "failed"


def test_a_failed_covering_run_answers_a_deferred_request(sessions: sessionmaker[Session]) -> None:
    # A deferred request is served by the first run after it: the follow-up. If that fails, so did the
    # request (its own task ended DEFERRED and will not run again).
    app = ScriptedApp(
        (FakeResult("DEFERRED"), None),
        (
            FakeResult("DEFERRED"),
            lambda: add_run(sessions, mode="incremental", task_id="f", serves_through=6),
        ),
        (FakeResult("DEFERRED"), lambda: finish(sessions, 1, "failed", 0)),
    )
    status, lines, _ = follow(app, sessions, Request(WOO, 5, False))
    assert status == "failed"
    assert lines[-1].startswith("run 1 (incremental) failed")


def test_a_request_found_served_by_its_task_answers_with_the_run_that_served_it(
    sessions: sessionmaker[Session],
) -> None:
    served = add_run(sessions, serves_through=9)
    finish(sessions, served, "partial", 2)
    summary = {"run_id": served, "status": "served", "request": 5}
    status, _, _ = follow(
        ScriptedApp((FakeResult("SUCCESS", summary), None)), sessions, Request(WOO, 5, True)
    )
    assert status == "partial"


def test_a_task_skipped_by_an_open_breaker_answers_with_its_run(sessions: sessionmaker[Session]) -> None:
    skipped = add_run(sessions, mode="incremental", serves_through=5)
    finish(sessions, skipped, "skipped_breaker_open", 0, retry_after=30.0)
    summary = {"run_id": skipped, "status": "skipped_breaker_open", "request": 5}
    status, _, _ = follow(
        ScriptedApp((FakeResult("SKIPPED", summary), None)), sessions, Request(WOO, 5, False)
    )
    assert status == "skipped_breaker_open"
    assert exit_code(status) == EXIT_BREAKER_OPEN
