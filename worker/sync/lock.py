"""One Redis lock per source, so two runs of a source never overlap.

The lock has a TTL. A heartbeat thread renews it every TTL/3 while the run lives, and the run renews
it once more before each page it writes: a crashed holder's lock expires by itself, a live run keeps
it however long one page (and its variations) takes, and a run that lost it writes nothing more.
A second run does not wait behind the first; it is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from worker.sync.sources import SyncSource

logger = logging.getLogger(__name__)


class LockLost(Exception):
    """The run's lock expired or was taken over; the run must stop writing."""


def lock_name(prefix: str, source: SyncSource) -> str:
    return f"{prefix}:lock:{source.value}"


class RunLock:
    """A non-blocking, TTL-bound lock on one source; once lost, it stays lost."""

    def __init__(self, redis: Redis, prefix: str, source: SyncSource, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._lost: str | None = None
        # thread_local=False: the token must be visible to whichever thread extends or releases it.
        self._lock: Lock = redis.lock(lock_name(prefix, source), timeout=ttl_seconds, thread_local=False)

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=False))

    def extend(self) -> None:
        """Push the expiry a full TTL ahead.

        Raises:
            LockLost: the lock expired or another run holds it (now or at any earlier renewal).
        """
        self.check()
        try:
            self._lock.extend(self.ttl, replace_ttl=True)
        except LockError as exc:
            self._lost = f"run lock {self._lock.name!r} was lost: {exc}"
            raise LockLost(self._lost) from None

    def check(self) -> None:
        """Raise ``LockLost`` if a renewal (by any thread) already found the lock gone; no round trip."""
        if self._lost is not None:
            raise LockLost(self._lost)

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def release(self) -> None:
        # An expired lock is already gone; releasing someone else's is refused by redis-py itself.
        with contextlib.suppress(LockError):
            self._lock.release()


class LockHeartbeat:
    """A daemon thread renewing a ``RunLock`` every ``interval`` seconds until stopped or the lock is lost.

    It only renews: the run notices a loss at its next page boundary (``RunLock.check``/``extend``)
    and stops there, so no page is cut in half. A Redis error is not a loss -- the lock may well still
    be ours -- so the heartbeat retries at the next beat; if Redis stays away the TTL runs out and the
    next renewal reports the loss.
    """

    def __init__(self, lock: RunLock, interval: float) -> None:
        self._lock = lock
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="sync-lock-heartbeat", daemon=True)
        self.beats = 0

    def __enter__(self) -> LockHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._lock.extend()
            except LockLost:
                logger.warning("sync run lock lost; the run stops at its next page")
                return
            except RedisError as exc:
                logger.warning("sync run lock renewal failed: %s", type(exc).__name__)
                continue
            self.beats += 1
