"""Request numbers: every request for a source gets the next number, in PostgreSQL.

A run serves the requests numbered up to the counter's value when its pass started
(``sync_runs.serves_through``). Numbers and that value live in the same database, so a Redis flush or
failover can never make a new request look served by an old run.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from worker.sync import fence
from worker.sync.context import transaction


def number_request(session_factory: Callable[[], Session], source: str) -> int:
    """Number a new request for ``source``, committed before the request is sent."""
    with transaction(session_factory) as conn:
        return fence.next_request(conn, source)
