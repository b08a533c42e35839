"""One Redis lock per source, so two runs of a source never overlap, and the requests that meet it.

The lock's value names its holder (host, PID namespace, pid, task id, a random token). A heartbeat
thread renews it every TTL/3 while the run lives, and the run renews it once more before each page it
writes; the TTL is short (seconds), so a holder that died with its whole host is recognised within one
TTL, and a holder in this host's PID namespace whose process is gone (a pool child killed by the OOM
killer) at once.

A request that meets a live holder is not dropped: it is recorded as a follow-up of its mode in
``<prefix>:{<source>}:followups`` (the field holds the highest request number waiting), however many
requests coalesce into it. A run that starts a fresh pass clears the follow-ups its pass serves (see
``clear_served``); releasing the lock hands back the ones still pending, for the caller to enqueue, and
a sweeper (``worker/celeryapp/followups.py``) enqueues any that a dead or failed releaser left behind.

Safety does not rest on the TTL: a run that lost its lock is fenced out in the database (``fence.py``).
Keys of one source share a hash tag, so the scripts also run on Redis Cluster.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"
MODES = (FULL, INCREMENTAL)

# KEYS: lock, followups. ARGV: holder, ttl ms, mode, a dead holder's value or "", defer (0/1), request.
# Returns {1, holder, 0} when acquired; {0, current holder, created} when held: with defer=1 the request
# is recorded as a follow-up (created=1 if it is the first of its mode), with defer=0 created is -1.
ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[4] then
  if ARGV[5] ~= '1' then
    return {0, current, -1}
  end
  local waiting = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
  local number = math.max(tonumber(ARGV[6]), 1)
  if number > waiting then
    redis.call('HSET', KEYS[2], ARGV[3], number)
  end
  return {0, current, waiting == 0 and 1 or 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ARGV[1], 0}
"""

EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: followups. ARGV: the highest request number served, then the modes served.
CLEAR_SERVED = """
for i = 2, #ARGV do
  local waiting = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if waiting > 0 and waiting <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
if redis.call('HEXISTS', KEYS[1], 'full') == 0 and redis.call('HEXISTS', KEYS[1], 'incremental') == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
"""

# KEYS: lock, followups. ARGV: holder. Returns the pending follow-up modes (marked as being dispatched
# now, so the sweeper leaves them to the caller for a while), or -1 when the lock was no longer ours.
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
if #pending > 0 then
  redis.call('HSET', KEYS[2], 'dispatched_at', redis.call('TIME')[1])
end
return pending
"""


def lock_name(prefix: str, source: str) -> str:
    return f"{prefix}:{{{source}}}:lock"


def followups_name(prefix: str, source: str) -> str:
    return f"{prefix}:{{{source}}}:followups"


def mode_of(full: bool) -> str:
    return FULL if full else INCREMENTAL


def served_modes(full: bool) -> list[str]:
    """The request modes a run serves: a full run serves incremental requests too, never the reverse."""
    return [FULL, INCREMENTAL] if full else [INCREMENTAL]


@cache
def pid_namespace() -> str:
    """This process's PID namespace (containers each have their own); "" where there is no /proc."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """Who holds a source: enough for an operator to find the process, and for a peer to see it died."""

    host: str
    pid: int
    task_id: str | None
    mode: str
    token: str
    pid_ns: str = ""

    @classmethod
    def here(cls, task_id: str | None, mode: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), task_id, mode, uuid.uuid4().hex, pid_namespace())

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, value: str | bytes | None) -> Holder | None:
        try:
            data = json.loads(value or "")
            return cls(str(data["host"]), int(data["pid"]), data.get("task_id"), str(data["mode"]),
                       str(data["token"]), str(data.get("pid_ns") or ""))  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None

    def public(self) -> dict[str, Any]:
        """What events and run rows show (the token is nobody's business)."""
        return {"host": self.host, "pid": self.pid, "task_id": self.task_id, "mode": self.mode}


# Tokens of the runs this process holds right now: a holder with our pid and another token is a lock a
# run of ours failed to release, not a live run.
_ACTIVE: set[str] = set()


def process_gone(holder: Holder) -> bool:
    """True only when ``holder`` ran in this host's PID namespace and its process is gone.

    The hostname alone does not identify a PID namespace (host networking, a fixed ``hostname:``), so
    both must match before a pid is looked up; otherwise the holder is left to its TTL.
    """
    if holder.host != socket.gethostname() or not holder.pid_ns or holder.pid_ns != pid_namespace():
        return False
    if holder.pid == os.getpid():
        return holder.token not in _ACTIVE
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


class LockLost(Exception):
    """The run's lock expired or was taken over; the run must stop writing."""


@dataclass(frozen=True)
class Acquired:
    pass


@dataclass(frozen=True)
class Deferred:
    holder: Holder | None
    created: bool  # False: coalesced into a follow-up that was already pending


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RunLock:
    """A non-blocking, TTL-bound lock on one source; once lost, it stays lost."""

    def __init__(self, redis: Redis, prefix: str, source: str, ttl_seconds: float, holder: Holder) -> None:
        self.ttl = ttl_seconds
        self.holder = holder
        self.name = lock_name(prefix, source)
        self._keys = [self.name, followups_name(prefix, source)]
        self._value = holder.dumps()
        self._lost: str | None = None
        self._acquire = redis.register_script(ACQUIRE)
        self._extend = redis.register_script(EXTEND)
        self._clear = redis.register_script(CLEAR_SERVED)
        self._release = redis.register_script(RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _call(self, replace: str, defer: bool, request: int) -> tuple[bool, str, int]:
        args: list[str | int] = [self._value, self._ttl_ms, self.holder.mode, replace, int(defer), request]
        ok, value, created = self._acquire(self._keys, args)
        return bool(ok), _text(value), int(created)

    def acquire(self, request: int) -> Acquired | Deferred:
        """Take the lock, or record request number ``request`` as a follow-up of the run holding it.

        A holder in this PID namespace whose process is gone is replaced at once instead of waiting out
        its TTL; only a live (or unknown) holder gets the follow-up.
        """
        # Marked active before the lock is ours: another thread of this process that meets it meanwhile
        # must not take it for a lock a run of ours left behind.
        _ACTIVE.add(self.holder.token)
        ok, value, _ = self._call("", False, request)
        if not ok:
            holder = Holder.loads(value)
            dead = holder is not None and process_gone(holder)
            if dead and holder is not None:
                logger.warning("sync lock holder is gone; taking over", extra=holder.public())
            ok, value, created = self._call(value if dead else "", True, request)
            if not ok:
                _ACTIVE.discard(self.holder.token)
                return Deferred(Holder.loads(value), created == 1)
        return Acquired()

    def clear_served(self, serves_through: int, full: bool) -> None:
        """A fresh pass starts now: drop the follow-ups it serves (requests up to ``serves_through``)."""
        self._clear(self._keys[1:], [serves_through, *served_modes(full)])

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
        _ACTIVE.discard(self.holder.token)
        pending = self._release(self._keys, [self._value])
        if not isinstance(pending, list):
            return []
        return [_text(p) for p in pending]


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
