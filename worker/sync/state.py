"""Bookmarks per source in ``sync_state``: the watermark and the resume checkpoint of each mode.

The checkpoint column holds one entry per mode (``{"full": {...}, "incremental": {...}}``) so a
scheduled incremental run does not throw away the progress of an interrupted full one. Checkpoints
are written in the same transaction as the page they follow: a page is stored together with the
note that it was stored, or not at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from models import SyncState
from worker.sync.outcome import RunStatus
from worker.sync.sources import table_of

STATE = table_of(SyncState)


@dataclass(frozen=True)
class Bookmark:
    watermark: dt.datetime | None
    checkpoint: dict[str, Any] | None


def _mode(full: bool) -> str:
    return "full" if full else "incremental"


def _ensure_row(conn: Connection, source: str) -> dict[str, Any]:
    row = conn.execute(select(STATE).where(STATE.c.source == source)).mappings().first()
    if row is None:
        conn.execute(STATE.insert().values(source=source, checkpoint={}))
        return {"watermark": None, "checkpoint": {}}
    return dict(row)


def load_bookmark(conn: Connection, source: str, *, full: bool) -> Bookmark:
    """The source's watermark and the checkpoint of an unfinished run of the same mode."""
    row = _ensure_row(conn, source)
    checkpoints = row.get("checkpoint") or {}
    return Bookmark(row.get("watermark"), checkpoints.get(_mode(full)))


def _set_checkpoint(
    conn: Connection, source: str, full: bool, value: dict[str, Any] | None, now: dt.datetime
) -> None:
    current = _ensure_row(conn, source).get("checkpoint") or {}
    checkpoints = {k: v for k, v in current.items() if k != _mode(full)}
    if value is not None:
        checkpoints[_mode(full)] = value
    stmt = update(STATE).where(STATE.c.source == source).values(checkpoint=checkpoints, updated_at=now)
    conn.execute(stmt)


def save_checkpoint(
    conn: Connection, source: str, *, full: bool, checkpoint: dict[str, Any], now: dt.datetime
) -> None:
    """Record where this mode's pass resumes; call inside the page's transaction."""
    _set_checkpoint(conn, source, full, checkpoint, now)


def complete_pass(
    conn: Connection,
    source: str,
    *,
    full: bool,
    watermark: dt.datetime | None,
    now: dt.datetime,
) -> None:
    """A pass finished: drop its checkpoint and set the watermark it earned.

    The watermark is the upstream's clock when the pass started (or an older one the pass chose to
    keep), so it replaces the stored one even when older: keeping a later one could only skip changes.
    """
    _set_checkpoint(conn, source, full, None, now)
    if full:
        # A complete full pass also finishes whatever incremental pass was pending.
        _set_checkpoint(conn, source, False, None, now)
    values: dict[str, Any] = {"updated_at": now}
    if watermark is not None:
        values["watermark"] = watermark
    conn.execute(update(STATE).where(STATE.c.source == source).values(**values))


def record_outcome(
    conn: Connection,
    source: str,
    *,
    run_id: int | None,
    status: RunStatus,
    full: bool,
    now: dt.datetime,
) -> None:
    """Remember the last run's status, and when the source last succeeded."""
    _ensure_row(conn, source)
    values: dict[str, Any] = {"last_run_id": run_id, "last_status": status.value, "updated_at": now}
    if status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL):
        values["last_success_at"] = now
        if full:
            values["last_full_success_at"] = now
    conn.execute(update(STATE).where(STATE.c.source == source).values(**values))
