"""`syncworker sync --wait`: progress from the run row, outcome from the task, exit codes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from models import Base, SyncRun
from worker.cli.sync import EXIT_BREAKER_OPEN, EXIT_FAILED, EXIT_PARTIAL, exit_code, wait_for

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class FakeResult:
    def __init__(self, state: str, result: Any = None) -> None:
        self.state = state
        self.result = result

    def ready(self) -> bool:
        return self.state in ("SUCCESS", "FAILURE")

    def successful(self) -> bool:
        return self.state == "SUCCESS"


class ScriptedApp:
    """Each poll sees the next scripted task state; ``on_poll`` changes the run row in between."""

    def __init__(self, *steps: tuple[FakeResult, Any]) -> None:
        self.steps = list(steps)

    def AsyncResult(self, task_id: str) -> FakeResult:
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


def add_run(sessions: sessionmaker[Session], **fields: Any) -> None:
    values = {"source": "woocommerce-products", "mode": "full", "task_id": "t1", "started_at": T0, **fields}
    with sessions() as session:
        session.add(SyncRun(**values))
        session.commit()


def finish(sessions: sessionmaker[Session], status: str, inserted: int) -> None:
    with sessions() as session:
        run = session.query(SyncRun).order_by(SyncRun.id.desc()).first()
        assert run is not None
        run.status, run.inserted, run.finished_at = status, inserted, T0
        session.commit()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("succeeded", 0),
        ("skipped_already_running", 0),
        ("partial", EXIT_PARTIAL),
        ("skipped_breaker_open", EXIT_BREAKER_OPEN),
        ("failed", EXIT_FAILED),
        ("redelivery_limit", EXIT_FAILED),
        ("something-new", EXIT_FAILED),
    ],
)
def test_exit_codes(status: str, code: int) -> None:
    assert exit_code(status) == code


def test_progress_follows_the_run_rows_of_the_task(sessions: sessionmaker[Session]) -> None:
    clock, lines = FakeClock(), []
    app = ScriptedApp(
        (FakeResult("PENDING"), None),
        (FakeResult("STARTED"), lambda: add_run(sessions, status="running")),
        (FakeResult("STARTED"), lambda: finish(sessions, "interrupted", 100)),
        (FakeResult("STARTED"), lambda: add_run(sessions, status="running")),
        (FakeResult("SUCCESS", {"status": "succeeded"}), lambda: finish(sessions, "succeeded", 188)),
    )
    status = wait_for(app, "t1", sessions, timeout=60, show=lines.append, clock=clock, sleep=clock.sleep)
    assert status == "succeeded"
    assert lines == [
        "task pending, no run started yet",
        "run 1 running since 12:00:00 UTC",
        "run 1 interrupted: fetched 0, inserted 100, updated 0, unchanged 0, skipped 0, failed 0",
        "run 2 running since 12:00:00 UTC",
        "run 2 succeeded: fetched 0, inserted 188, updated 0, unchanged 0, skipped 0, failed 0",
    ]


def test_a_task_that_raised_is_a_failure(sessions: sessionmaker[Session]) -> None:
    clock = FakeClock()
    app = ScriptedApp((FakeResult("FAILURE", RuntimeError("db down")), None))
    status = wait_for(app, "t1", sessions, timeout=60, show=lambda _: None, clock=clock, sleep=clock.sleep)
    assert status == "failed"


def test_gives_up_after_the_timeout(sessions: sessionmaker[Session]) -> None:
    clock = FakeClock()
    app = ScriptedApp((FakeResult("STARTED"), None))
    status = wait_for(app, "t1", sessions, timeout=5, show=lambda _: None, clock=clock, sleep=clock.sleep)
    assert status is None
    assert clock.now >= 5
