"""``sync_runs`` rows: open one per run, close it with its outcome, and close what crashed runs left.

Callers give each function its own short transaction, so a run's row is visible while it runs and
survives the rollback of a page that failed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select, update

from models import SyncRun
from worker.sync.outcome import Counts, RunStatus
from worker.sync.sources import SyncSource, table_of

RUNS = table_of(SyncRun)
ERROR_MAX = 2000


def _mode(full: bool) -> str:
    return "full" if full else "incremental"


def open_run(
    conn: Connection, source: SyncSource, *, full: bool, task_id: str | None, now: dt.datetime
) -> int:
    """A ``running`` row for a run that holds the source's lock."""
    values = {
        "source": source.value,
        "mode": _mode(full),
        "task_id": task_id,
        "status": RunStatus.RUNNING.value,
    }
    stmt = RUNS.insert().values(started_at=now, **values).returning(RUNS.c.id)
    return int(conn.execute(stmt).scalar_one())


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: RunStatus,
    counts: Counts,
    now: dt.datetime,
    error: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Close a run with its outcome, counts and duration."""
    started = conn.execute(select(RUNS.c.started_at).where(RUNS.c.id == run_id)).scalar_one()
    values: dict[str, Any] = {
        "status": status.value,
        "finished_at": now,
        "duration_seconds": max(0.0, (now - started).total_seconds()),
        "error": error[:ERROR_MAX] if error else None,
        "details": details,
        **counts.as_dict(),
    }
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**values))


def update_run_counts(conn: Connection, run_id: int, counts: Counts) -> None:
    """Progress of a running run; call inside the transaction of the page the counts include."""
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**counts.as_dict()))


def record_skipped_run(
    conn: Connection,
    source: SyncSource,
    *,
    full: bool,
    task_id: str | None,
    status: RunStatus,
    now: dt.datetime,
    details: dict[str, Any] | None = None,
) -> int:
    """A run that never started (its source's lock is held elsewhere): opened and closed at once."""
    values = {"source": source.value, "mode": _mode(full), "task_id": task_id, "status": status.value}
    stmt = RUNS.insert().values(
        started_at=now, finished_at=now, duration_seconds=0.0, details=details, **values
    )
    return int(conn.execute(stmt.returning(RUNS.c.id)).scalar_one())


def close_stale_runs(conn: Connection, source: SyncSource, *, now: dt.datetime) -> list[int]:
    """Mark ``interrupted`` every ``running`` row of the source; call only while holding its lock.

    Holding the lock proves the run that left the row is gone: it crashed and its lock expired.
    """
    stale = select(RUNS.c.id).where(RUNS.c.source == source.value, RUNS.c.status == RunStatus.RUNNING.value)
    ids = [int(i) for i in conn.execute(stale).scalars()]
    if ids:
        values = {
            "status": RunStatus.INTERRUPTED.value,
            "finished_at": now,
            "error": "the worker running it stopped without closing it",
        }
        conn.execute(update(RUNS).where(RUNS.c.id.in_(ids)).values(**values))
    return ids
