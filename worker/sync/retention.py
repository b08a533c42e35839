"""Bounded history: delete ``sync_runs`` and ``event_log`` rows older than their retention.

Each batch is its own short transaction of at most ``batch_size`` rows, so a prune never holds row
locks for long, never builds one huge transaction, and can stop between any two batches.

A run stays, however old, while it is ``running``, while ``sync_state.last_run_id`` points at it, or
while it is the newest run of its (source, mode): ``syncworker runs`` and the request bookkeeping
always find the last run a source made.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from models import EventLog, SyncRun, SyncState
from worker.sync.outcome import RunStatus

RUNS = cast(Table, SyncRun.__table__)
EVENTS = cast(Table, EventLog.__table__)
STATES = cast(Table, SyncState.__table__)
NEWER = RUNS.alias("newer")
DEFAULT_BATCH_SIZE = 5000

# Where the walk over old runs has got to: (started_at, id) of the last run it looked at.
RunKey = tuple[dt.datetime, int]


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed; ``batches`` counts the transactions that deleted at least one row."""

    runs_deleted: int = 0
    events_deleted: int = 0
    batches: int = 0
    stopped: bool = False


@contextmanager
def _transaction(session_factory: Callable[[], Session]) -> Iterator[Connection]:
    with session_factory() as session, session.begin():
        yield session.connection()


def _deletable_runs() -> list[Any]:
    """Conditions true for a run that may go: finished, not a source's last run, not the newest of its
    (source, mode). "Newest" is by start time, then id: the order `syncworker runs` lists them in."""
    is_last_run = select(STATES.c.last_run_id).where(STATES.c.last_run_id.is_not(None))
    # A scalar subquery with LIMIT 1 runs once per candidate row, reading the newest end of the
    # (source, started_at) index. Written as EXISTS (a newer run), PostgreSQL turned it into a hash
    # join over the whole table: seconds per batch at a month of history.
    newest = (
        select(NEWER.c.id)
        .where(NEWER.c.source == RUNS.c.source, NEWER.c.mode == RUNS.c.mode)
        .order_by(NEWER.c.started_at.desc(), NEWER.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return [RUNS.c.status != RunStatus.RUNNING.value, RUNS.c.id.not_in(is_last_run), RUNS.c.id != newest]


def _after(key: RunKey | None) -> list[Any]:
    if key is None:
        return []
    started, run_id = key
    return [
        RUNS.c.started_at >= started,
        or_(RUNS.c.started_at > started, and_(RUNS.c.started_at == started, RUNS.c.id > run_id)),
    ]


def _runs_batch(
    conn: Connection, cutoff: dt.datetime, after: RunKey | None, size: int
) -> tuple[int, int, RunKey | None]:
    """Look at the next ``size`` old runs; delete those no rule keeps. Returns (looked at, deleted, last key).

    The walk moves past kept runs by key, so a prefix of kept runs never stalls it; and it goes by
    ``started_at`` (indexed) rather than id, so the last batch reads only old rows, not the whole table.
    """
    window = (
        select(RUNS.c.started_at, RUNS.c.id)
        .where(RUNS.c.started_at < cutoff, *_after(after))
        .order_by(RUNS.c.started_at, RUNS.c.id)
        .limit(size)
    )
    keys = conn.execute(window).all()
    if not keys:
        return 0, 0, after
    ids = [row.id for row in keys]
    deleted = conn.execute(delete(RUNS).where(RUNS.c.id.in_(ids), *_deletable_runs())).rowcount
    last = keys[-1]
    return len(keys), deleted, (last.started_at, last.id)


def _events_batch(conn: Connection, cutoff: dt.datetime, size: int) -> int:
    # Oldest first by occurred_at: the index on it finds them without reading newer rows.
    window = (
        select(EVENTS.c.id).where(EVENTS.c.occurred_at < cutoff).order_by(EVENTS.c.occurred_at, EVENTS.c.id)
    )
    stmt = delete(EVENTS).where(EVENTS.c.id.in_(window.limit(size).scalar_subquery()))
    return int(conn.execute(stmt).rowcount)


def _run_batches(session_factory: Callable[[], Session], cutoff: dt.datetime, size: int) -> Iterator[int]:
    """Each batch's deleted count; a batch that looked at fewer than ``size`` runs was the last."""
    after: RunKey | None = None
    looked = size
    while looked == size:
        with _transaction(session_factory) as conn:
            looked, deleted, after = _runs_batch(conn, cutoff, after, size)
        yield deleted


def _event_batches(session_factory: Callable[[], Session], cutoff: dt.datetime, size: int) -> Iterator[int]:
    deleted = size
    while deleted == size:
        with _transaction(session_factory) as conn:
            deleted = _events_batch(conn, cutoff, size)
        yield deleted


def _drain(batches: Iterator[int], should_stop: Callable[[], bool]) -> tuple[int, int, bool]:
    """Run batches until there are no more or ``should_stop()``: (rows deleted, batches that deleted
    rows, stopped). Batches are lazy, so each runs only after the check before it."""
    deleted = used = 0
    while not should_stop():
        count = next(batches, None)
        if count is None:
            return deleted, used, False
        deleted += count
        used += 1 if count else 0
    return deleted, used, True


def prune_history(
    session_factory: Callable[[], Session],
    *,
    now: dt.datetime,
    runs_older_than: dt.timedelta,
    events_older_than: dt.timedelta,
    batch_size: int = DEFAULT_BATCH_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
) -> PruneReport:
    """Delete runs started before ``now - runs_older_than``, then events that occurred before
    ``now - events_older_than``, in batches; ``should_stop()`` is asked before each batch.

    Raises:
        ValueError: ``batch_size`` is below 1.
    """
    if batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size}"
        raise ValueError(msg)
    run_steps = _run_batches(session_factory, now - runs_older_than, batch_size)
    runs, run_batches, stopped = _drain(run_steps, should_stop)
    if stopped:
        return PruneReport(runs, 0, run_batches, stopped=True)
    event_steps = _event_batches(session_factory, now - events_older_than, batch_size)
    events, event_batches, stopped = _drain(event_steps, should_stop)
    return PruneReport(runs, events, run_batches + event_batches, stopped)


def count_prunable(
    session_factory: Callable[[], Session],
    *,
    now: dt.datetime,
    runs_older_than: dt.timedelta,
    events_older_than: dt.timedelta,
) -> PruneReport:
    """What ``prune_history`` would delete now, counted without deleting anything (``batches`` is 0)."""
    runs = (
        select(func.count())
        .select_from(RUNS)
        .where(RUNS.c.started_at < now - runs_older_than, *_deletable_runs())
    )
    events = select(func.count()).select_from(EVENTS).where(EVENTS.c.occurred_at < now - events_older_than)
    with _transaction(session_factory) as conn:
        return PruneReport(int(conn.execute(runs).scalar_one()), int(conn.execute(events).scalar_one()))
