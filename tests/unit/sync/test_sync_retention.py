"""History retention on SQLite: what goes, what stays however old, and batches that stay small."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from models import EventLog, SyncRun, SyncState
from worker.infra.db import make_session_factory
from worker.sync.retention import PruneReport, count_prunable, prune_history

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
RUNS_AGE = dt.timedelta(days=30)
EVENTS_AGE = dt.timedelta(days=90)
OLD_RUN = NOW - dt.timedelta(days=40)
OLD_EVENT = NOW - dt.timedelta(days=100)
WOO = "woocommerce-products"
ODOO = "odoo-suppliers"


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def add_run(
    engine: Engine,
    started: dt.datetime,
    *,
    source: str = WOO,
    mode: str = "incremental",
    status: str = "succeeded",
) -> int:
    values = {"source": source, "mode": mode, "status": status, "started_at": started}
    with engine.begin() as conn:
        return int(conn.execute(insert(SyncRun).values(**values).returning(SyncRun.id)).scalar_one())


def add_event(engine: Engine, occurred: dt.datetime) -> int:
    values = {
        "event_type": "breaker.call_rejected",
        "occurred_at": occurred,
        "payload": {},
        "event_metadata": {},
    }
    with engine.begin() as conn:
        return int(conn.execute(insert(EventLog).values(**values).returning(EventLog.id)).scalar_one())


def run_ids(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(SyncRun.id)).scalars())


def event_ids(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(EventLog.id)).scalars())


def count_rows(engine: Engine, model: type[SyncRun] | type[EventLog]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def prune(sqlite_engine: Engine) -> Callable[..., PruneReport]:
    sessions = make_session_factory(sqlite_engine)

    def run(**options: Any) -> PruneReport:
        return prune_history(
            sessions, now=NOW, runs_older_than=RUNS_AGE, events_older_than=EVENTS_AGE, **options
        )

    return run


def test_old_rows_go_and_recent_rows_stay(sqlite_engine: Engine, prune: Callable[..., PruneReport]) -> None:
    old_runs = {add_run(sqlite_engine, days_ago(d)) for d in (45, 31)}
    recent_runs = {add_run(sqlite_engine, days_ago(d)) for d in (29, 1)}
    old_events = {add_event(sqlite_engine, days_ago(d)) for d in (120, 91)}
    recent_events = {add_event(sqlite_engine, days_ago(d)) for d in (89, 1)}

    report = prune()

    assert report == PruneReport(runs_deleted=2, events_deleted=2, batches=2)
    assert run_ids(sqlite_engine) == recent_runs
    assert event_ids(sqlite_engine) == recent_events
    assert not old_runs & run_ids(sqlite_engine) and not old_events & event_ids(sqlite_engine)


def test_a_row_exactly_at_the_cutoff_stays(sqlite_engine: Engine, prune: Callable[..., PruneReport]) -> None:
    at_cutoff = add_run(sqlite_engine, NOW - RUNS_AGE)
    add_run(sqlite_engine, days_ago(1))
    event = add_event(sqlite_engine, NOW - EVENTS_AGE)
    assert prune() == PruneReport()
    assert at_cutoff in run_ids(sqlite_engine) and event in event_ids(sqlite_engine)


def test_a_running_run_stays_however_old(sqlite_engine: Engine, prune: Callable[..., PruneReport]) -> None:
    stuck = add_run(sqlite_engine, days_ago(60), status="running")
    finished = add_run(sqlite_engine, days_ago(59), status="failed")
    add_run(sqlite_engine, days_ago(1))
    assert prune().runs_deleted == 1
    assert stuck in run_ids(sqlite_engine) and finished not in run_ids(sqlite_engine)


def test_the_newest_run_of_each_source_and_mode_stays_however_old(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    # A source that has not run for months: its last incremental and its last full run stay.
    gone = {add_run(sqlite_engine, days_ago(d), source=ODOO) for d in (90, 80)}
    last_incremental = add_run(sqlite_engine, days_ago(70), source=ODOO, status="skipped_breaker_open")
    gone.add(add_run(sqlite_engine, days_ago(75), source=ODOO, mode="full"))
    last_full = add_run(sqlite_engine, days_ago(74), source=ODOO, mode="full")
    # Another source's newer run does not count as newer for this one.
    other = add_run(sqlite_engine, days_ago(1), source=WOO)

    assert prune().runs_deleted == 3
    assert run_ids(sqlite_engine) == {last_incremental, last_full, other}
    assert not gone & run_ids(sqlite_engine)


def test_of_two_runs_started_at_once_the_later_id_is_the_newest(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    first = add_run(sqlite_engine, days_ago(40))
    second = add_run(sqlite_engine, days_ago(40))
    assert prune().runs_deleted == 1
    assert run_ids(sqlite_engine) == {second} and first < second


def test_the_run_a_source_state_points_at_stays(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    pointed = add_run(sqlite_engine, days_ago(50))
    add_run(sqlite_engine, days_ago(1))
    with Session(sqlite_engine) as session, session.begin():
        session.add(SyncState(source=WOO, last_run_id=pointed))
        session.add(SyncState(source=ODOO, last_run_id=None))  # a NULL must not protect (or hide) anything
    unpointed = add_run(sqlite_engine, days_ago(49))
    assert prune().runs_deleted == 1
    assert pointed in run_ids(sqlite_engine) and unpointed not in run_ids(sqlite_engine)


def test_batches_are_bounded(sqlite_engine: Engine, prune: Callable[..., PruneReport]) -> None:
    for day in range(10):
        add_run(sqlite_engine, days_ago(40 + day))
    add_run(sqlite_engine, days_ago(1))
    remaining: list[int] = []

    def watch() -> bool:
        remaining.append(count_rows(sqlite_engine, SyncRun))
        return False

    report = prune(batch_size=3, should_stop=watch)

    assert (report.runs_deleted, report.batches) == (10, 4)
    # Asked before every batch (and once more after the last): never more than 3 rows went at once.
    assert remaining[:5] == [11, 8, 5, 2, 1]


def test_event_batches_are_bounded_and_end_after_a_short_batch(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    for day in range(7):
        add_event(sqlite_engine, days_ago(100 + day))
    recent = add_event(sqlite_engine, days_ago(1))
    assert prune(batch_size=3) == PruneReport(events_deleted=7, batches=3)
    assert event_ids(sqlite_engine) == {recent}


def test_a_full_batch_of_kept_runs_does_not_stall_the_walk(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    # The three oldest runs are all kept (still running): the batches after them must still come.
    stuck = {add_run(sqlite_engine, days_ago(90 - d), status="running") for d in range(3)}
    for day in range(5):
        add_run(sqlite_engine, days_ago(60 - day))
    add_run(sqlite_engine, days_ago(1))
    report = prune(batch_size=3)
    assert report.runs_deleted == 5
    assert stuck <= run_ids(sqlite_engine) and len(run_ids(sqlite_engine)) == 4


def test_should_stop_halts_between_batches(sqlite_engine: Engine, prune: Callable[..., PruneReport]) -> None:
    for day in range(10):
        add_run(sqlite_engine, days_ago(40 + day))
        add_event(sqlite_engine, days_ago(100 + day))
    add_run(sqlite_engine, days_ago(1))
    answers = iter([False, False, True])

    report = prune(batch_size=3, should_stop=lambda: next(answers))

    assert report == PruneReport(runs_deleted=6, events_deleted=0, batches=2, stopped=True)
    assert count_rows(sqlite_engine, SyncRun) == 5
    assert count_rows(sqlite_engine, EventLog) == 10


def test_should_stop_halts_the_event_batches_too(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    add_run(sqlite_engine, days_ago(40))
    add_run(sqlite_engine, days_ago(1))
    for day in range(10):
        add_event(sqlite_engine, days_ago(100 + day))
    # Runs: one batch, then the check that finds no more; events: one batch, then stop.
    answers = iter([False, False, False, True])

    report = prune(batch_size=3, should_stop=lambda: next(answers))

    assert report == PruneReport(runs_deleted=1, events_deleted=3, batches=2, stopped=True)
    assert count_rows(sqlite_engine, EventLog) == 7


def test_a_stop_before_the_first_batch_deletes_nothing(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    add_run(sqlite_engine, days_ago(40))
    add_run(sqlite_engine, days_ago(1))
    add_event(sqlite_engine, days_ago(100))
    assert prune(should_stop=lambda: True) == PruneReport(stopped=True)
    assert (count_rows(sqlite_engine, SyncRun), count_rows(sqlite_engine, EventLog)) == (2, 1)


def test_batch_size_below_one_is_refused(prune: Callable[..., PruneReport]) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        prune(batch_size=0)


def test_count_prunable_counts_what_prune_deletes_and_deletes_nothing(
    sqlite_engine: Engine, prune: Callable[..., PruneReport]
) -> None:
    add_run(sqlite_engine, days_ago(50), status="running")
    for day in range(4):
        add_run(sqlite_engine, days_ago(40 + day))
    add_run(sqlite_engine, days_ago(35), source=ODOO)  # the newest of its source: kept
    add_run(sqlite_engine, days_ago(1))
    for day in range(3):
        add_event(sqlite_engine, days_ago(95 + day))
    sessions = make_session_factory(sqlite_engine)

    counted = count_prunable(sessions, now=NOW, runs_older_than=RUNS_AGE, events_older_than=EVENTS_AGE)

    assert counted == PruneReport(runs_deleted=4, events_deleted=3)
    assert (count_rows(sqlite_engine, SyncRun), count_rows(sqlite_engine, EventLog)) == (7, 3)
    deleted = prune()
    assert (deleted.runs_deleted, deleted.events_deleted) == (4, 3)
