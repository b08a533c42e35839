"""One Redis lock per source, so two runs of a source never overlap.

The lock has a TTL and the run extends it after every page: a crashed holder's lock expires by
itself, and a live run keeps it. A second run does not wait behind the first; it is skipped.
"""

from __future__ import annotations

import contextlib

from redis import Redis
from redis.exceptions import LockError
from redis.lock import Lock

from worker.sync.sources import SyncSource


class LockLost(Exception):
    """The run's lock expired or was taken over; the run must stop writing."""


def lock_name(prefix: str, source: SyncSource) -> str:
    return f"{prefix}:lock:{source.value}"


class RunLock:
    """A non-blocking, TTL-bound lock on one source."""

    def __init__(self, redis: Redis, prefix: str, source: SyncSource, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        # thread_local=False: the token must be visible to whichever thread extends or releases it.
        self._lock: Lock = redis.lock(lock_name(prefix, source), timeout=ttl_seconds, thread_local=False)

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=False))

    def extend(self) -> None:
        """Push the expiry a full TTL ahead.

        Raises:
            LockLost: the lock expired (a page took longer than the TTL) and may belong to another run.
        """
        try:
            self._lock.extend(self._ttl, replace_ttl=True)
        except LockError as exc:
            msg = f"run lock {self._lock.name!r} was lost: {exc}"
            raise LockLost(msg) from None

    def release(self) -> None:
        # An expired lock is already gone; releasing someone else's is refused by redis-py itself.
        with contextlib.suppress(LockError):
            self._lock.release()
