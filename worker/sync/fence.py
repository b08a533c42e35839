"""Fencing tokens: the database, not the Redis lock's TTL, decides which run of a source may write.

Each run that takes a source's lock claims the next token (``sync_state.fence + 1``) in its first
transaction. Every transaction that writes for the run -- a page, a checkpoint, a reconciliation
step, the pass's completion -- first locks the source's ``sync_state`` row and checks the token is
still the current one. A run paused past its lock's TTL (GC pause, SIGSTOP, a partition) that wakes
up after a newer run claimed the source rolls back instead of writing over the newer run's work;
the row lock orders a claim after any page transaction already in flight.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models import SyncState
from worker.sync.lock import LockLost
from worker.sync.sources import table_of

STATE = table_of(SyncState)


class FencedOut(LockLost):
    """A newer run claimed the source; this run's transaction must not commit."""


def ensure_state_row(conn: Connection, source: str) -> None:
    # Requests are numbered outside the run lock, so two processes may create the row at once.
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    row: dict[str, Any] = {"source": source, "checkpoint": {}, "fence": 0, "requests": 0}
    conn.execute(dialect.insert(STATE).values(**row).on_conflict_do_nothing(index_elements=["source"]))


def claim(conn: Connection, source: str) -> tuple[int, int]:
    """Take the next fencing token for ``source``; call while holding its lock.

    Returns the token and the number of the newest request made so far: a pass that starts now serves
    every request numbered up to it.
    """
    ensure_state_row(conn, source)
    stmt = (
        update(STATE)
        .where(STATE.c.source == source)
        .values(fence=STATE.c.fence + 1)
        .returning(STATE.c.fence, STATE.c.requests)
    )
    token, requests = conn.execute(stmt).one()
    return int(token), int(requests)


def next_request(conn: Connection, source: str) -> int:
    """Number a new request for ``source`` (commit it before the request is sent)."""
    ensure_state_row(conn, source)
    stmt = (
        update(STATE)
        .where(STATE.c.source == source)
        .values(requests=STATE.c.requests + 1)
        .returning(STATE.c.requests)
    )
    return int(conn.execute(stmt).scalar_one())


def check(conn: Connection, source: str, fence: int) -> None:
    """Lock the source's state row and make sure ``fence`` is still current.

    Raises:
        FencedOut: a newer run claimed the source (the caller's transaction rolls back).
    """
    query = select(STATE.c.fence).where(STATE.c.source == source).with_for_update()
    current = conn.execute(query).scalar_one_or_none()
    if current != fence:
        msg = f"fenced out: this run holds token {fence}, the source is now at {current}"
        raise FencedOut(msg)
