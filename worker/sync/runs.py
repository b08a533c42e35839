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
from worker.sync.sources import table_of

RUNS = table_of(SyncRun)
ERROR_MAX = 2000


def _mode(full: bool) -> str:
    return "full" if full else "incremental"


def open_run(
    conn: Connection,
    source: str,
    *,
    full: bool,
    task_id: str | None,
    now: dt.datetime,
    fence: int | None = None,
    serves_through: int | None = None,
) -> int:
    """A ``running`` row for a run that holds the source's lock (and its fencing token)."""
    values = {
        "source": source,
        "mode": _mode(full),
        "task_id": task_id,
        "status": RunStatus.RUNNING.value,
        "fence": fence,
        "serves_through": serves_through,
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
    """Close a run with its outcome, counts and duration.

    A row a newer run already closed (this run was fenced out) keeps what that run wrote.
    """
    started = conn.execute(select(RUNS.c.started_at).where(RUNS.c.id == run_id)).scalar_one()
    values: dict[str, Any] = {
        "status": status.value,
        "finished_at": now,
        "duration_seconds": max(0.0, (now - started).total_seconds()),
        "error": error[:ERROR_MAX] if error else None,
        "details": details,
        **counts.as_dict(),
    }
    still_running = RUNS.c.status == RunStatus.RUNNING.value
    conn.execute(update(RUNS).where(RUNS.c.id == run_id, still_running).values(**values))


def update_run_counts(conn: Connection, run_id: int, counts: Counts) -> None:
    """Progress of a running run; call inside the transaction of the page the counts include."""
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**counts.as_dict()))


def record_skipped_run(
    conn: Connection,
    source: str,
    *,
    full: bool,
    task_id: str | None,
    status: RunStatus,
    now: dt.datetime,
    details: dict[str, Any] | None = None,
) -> int:
    """A run that never started (its source's lock is held elsewhere): opened and closed at once."""
    values = {"source": source, "mode": _mode(full), "task_id": task_id, "status": status.value}
    stmt = RUNS.insert().values(
        started_at=now, finished_at=now, duration_seconds=0.0, details=details, **values
    )
    return int(conn.execute(stmt.returning(RUNS.c.id)).scalar_one())


def close_stale_runs(conn: Connection, source: str, *, now: dt.datetime) -> list[int]:
    """Mark ``interrupted`` every ``running`` row of the source; call in the transaction that claims
    the source's fencing token.

    The run that left such a row either died or lost its lock; either way the new token fences it
    out, so it can write nothing more (not even this row: ``finish_run`` leaves closed rows alone).
    """
    stale = select(RUNS.c.id).where(RUNS.c.source == source, RUNS.c.status == RunStatus.RUNNING.value)
    ids = [int(i) for i in conn.execute(stale).scalars()]
    if ids:
        values = {
            "status": RunStatus.INTERRUPTED.value,
            "finished_at": now,
            "error": "its worker stopped, or it lost the source to a newer run",
            # The newer run continues its work from the checkpoint: `sync --wait` follows that one.
            "details": {"resumable": True},
        }
        conn.execute(update(RUNS).where(RUNS.c.id.in_(ids)).values(**values))
    return ids


SERVING = (RunStatus.SUCCEEDED.value, RunStatus.PARTIAL.value)
NOT_A_RUN = (RunStatus.DEFERRED.value, RunStatus.SKIPPED_ALREADY_RUNNING.value)


def covering(source: str, *, request: int, full: bool) -> list[Any]:
    """Conditions on ``sync_runs``: runs that started after request number ``request`` was made, in
    a mode that serves it (a full request only by a full run, an incremental one by either)."""
    modes = [_mode(True)] if full else [_mode(True), _mode(False)]
    return [
        RUNS.c.source == source,
        RUNS.c.serves_through >= request,
        RUNS.c.mode.in_(modes),
        RUNS.c.status.not_in(NOT_A_RUN),
    ]


def served_by(conn: Connection, source: str, *, request: int, full: bool) -> int | None:
    """The id of a finished run that served the request, if one did."""
    conditions = covering(source, request=request, full=full)
    stmt = select(RUNS.c.id).where(*conditions, RUNS.c.status.in_(SERVING)).order_by(RUNS.c.id).limit(1)
    found = conn.execute(stmt).scalar_one_or_none()
    return int(found) if found is not None else None
