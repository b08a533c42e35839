"""One Redis lock per source, so two runs of a source never overlap, and the requests that meet it.

The lock's value names its holder (host, pid, task id, a random token). A heartbeat thread renews it
every TTL/3 while the run lives, and the run renews it once more before each page it writes; the TTL
is short (seconds), so a holder that died with its whole host is recognised within one TTL, and a
holder on this host whose process is gone (a pool child killed by the OOM killer) at once.

A request that meets a live holder is not dropped: the same script that refused the lock records a
follow-up for the request's mode in ``<prefix>:followups:<source>`` (one per mode, however many
requests coalesce into it). Acquiring the lock clears the follow-ups the new run serves (a full run
serves both modes); releasing it hands back the ones still pending, for the caller to enqueue. A
follow-up left behind by a crash between release and enqueue is served by the next run of the source.

Safety does not rest on the TTL: a run that lost its lock is fenced out in the database (``fence.py``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from worker.sync.sources import SyncSource

logger = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"

# KEYS: lock, followups, request counter. ARGV: holder, ttl ms, mode, a dead holder's value or "".
# Returns {1, holder, serves_through} when acquired, {0, current holder, created?} when deferred.
ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[4] then
  local created = redis.call('HSETNX', KEYS[2], ARGV[3], '1')
  redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':requests', 1)
  return {0, current, created}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[3], ARGV[3] .. ':requests')
if ARGV[3] == 'full' then
  redis.call('HDEL', KEYS[2], 'incremental', 'incremental:requests')
end
return {1, ARGV[1], tonumber(redis.call('GET', KEYS[3]) or '0')}
"""

EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Returns the pending follow-up modes, or -1 when the lock was no longer ours.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('DEL', KEYS[1])
local pending = {}
for _, mode in ipairs({'full', 'incremental'}) do
  if redis.call('HEXISTS', KEYS[2], mode) == 1 then
    table.insert(pending, mode)
  end
end
return pending
"""

NEXT_REQUEST = "return redis.call('INCR', KEYS[1])"


class LockLost(Exception):
    """The run's lock expired or was taken over; the run must stop writing."""


def lock_name(prefix: str, source: SyncSource) -> str:
    return f"{prefix}:lock:{source.value}"


def followups_name(prefix: str, source: SyncSource) -> str:
    return f"{prefix}:followups:{source.value}"


def requests_name(prefix: str, source: SyncSource) -> str:
    return f"{prefix}:requests:{source.value}"


def mode_of(full: bool) -> str:
    return FULL if full else INCREMENTAL


@dataclass(frozen=True)
class Holder:
    """Who holds a source: enough for an operator to find the process, and for a peer to see it died."""

    host: str
    pid: int
    task_id: str | None
    mode: str
    token: str

    @classmethod
    def here(cls, task_id: str | None, mode: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), task_id, mode, uuid.uuid4().hex)

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, value: str | bytes | None) -> Holder | None:
        try:
            data = json.loads(value or "")
            return cls(str(data["host"]), int(data["pid"]), data.get("task_id"), str(data["mode"]),
                       str(data["token"]))  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None

    def public(self) -> dict[str, Any]:
        """What events and run rows show (the token is nobody's business)."""
        return {"host": self.host, "pid": self.pid, "task_id": self.task_id, "mode": self.mode}


def process_gone(holder: Holder) -> bool:
    """True only when ``holder`` ran on this host and its process no longer exists."""
    if holder.host != socket.gethostname() or holder.pid == os.getpid():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return _zombie(holder.pid)


def _zombie(pid: int) -> bool:
    """A killed process nobody reaped yet (its parent died too, and no init reaps orphans) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


@dataclass(frozen=True)
class Acquired:
    serves_through: int  # every request numbered up to this was made before the run started


@dataclass(frozen=True)
class Deferred:
    holder: Holder | None
    created: bool  # False: coalesced into a follow-up that was already pending


class RunLock:
    """A non-blocking, TTL-bound lock on one source; once lost, it stays lost."""

    def __init__(
        self, redis: Redis, prefix: str, source: SyncSource, ttl_seconds: float, holder: Holder
    ) -> None:
        self.ttl = ttl_seconds
        self.holder = holder
        self.name = lock_name(prefix, source)
        self._keys = [self.name, followups_name(prefix, source), requests_name(prefix, source)]
        self._value = holder.dumps()
        self._lost: str | None = None
        self._acquire = redis.register_script(ACQUIRE)
        self._extend = redis.register_script(EXTEND)
        self._release = redis.register_script(RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def acquire(self) -> Acquired | Deferred:
        """Take the lock, or record this request as a follow-up of the run that holds it.

        A holder on this host whose process is gone is replaced at once instead of waiting out its TTL.
        """
        replace = ""
        for _ in range(2):
            ok, value, extra = self._acquire(
                self._keys, [self._value, self._ttl_ms, self.holder.mode, replace]
            )
            if ok:
                return Acquired(int(extra))
            holder = Holder.loads(value)
            if replace or holder is None or not process_gone(holder):
                return Deferred(holder, bool(extra))
            logger.warning("sync lock holder is gone; taking over", extra=holder.public())
            replace = value.decode() if isinstance(value, bytes) else str(value)
        raise AssertionError("unreachable")  # pragma: no cover

    def extend(self) -> None:
        """Push the expiry a full TTL ahead.

        Raises:
            LockLost: the lock expired or another run holds it (now or at any earlier renewal).
        """
        self.check()
        if not self._extend(self._keys[:1], [self._value, self._ttl_ms]):
            self._lost = f"run lock {self.name!r} was lost (expired or taken over)"
            raise LockLost(self._lost)

    def check(self) -> None:
        """Raise ``LockLost`` if a renewal (by any thread) already found the lock gone; no round trip."""
        if self._lost is not None:
            raise LockLost(self._lost)

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def release(self) -> list[str]:
        """Give the lock up; returns the follow-up modes still pending (none when it was already lost)."""
        pending = self._release(self._keys[:2], [self._value])
        if not isinstance(pending, list):
            return []
        return [p.decode() if isinstance(p, bytes) else str(p) for p in pending]


def next_request(redis: Redis, prefix: str, source: SyncSource) -> int:
    """Number a request for ``source``: a run serves every request numbered before it started."""
    return int(redis.incr(requests_name(prefix, source)))


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


# KEYS: the delivery's key, the source's request counter. ARGV: TTL seconds.
NUMBER_DELIVERY = """
local known = redis.call('GET', KEYS[1])
if known then
  return tonumber(known)
end
local number = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], number, 'EX', ARGV[1])
return number
"""


def delivery_request(redis: Redis, prefix: str, source: SyncSource, task_id: str, ttl_seconds: int) -> int:
    """The request number of a message that arrived without one (a beat tick): fixed at its first
    delivery, so a redelivery after a crash recognises a run that started since as serving it."""
    keys = [f"{prefix}:request:{task_id}", requests_name(prefix, source)]
    return int(redis.register_script(NUMBER_DELIVERY)(keys, [ttl_seconds]))
