"""The follow-up sweeper: pending follow-ups that nobody is going to enqueue are enqueued here.

A run enqueues the follow-ups that met it when it releases its source. When it cannot -- it died, its
release failed, the broker refused the message -- the follow-up stays pending in Redis with the source
unlocked. Every worker's main process sweeps every few seconds: a source with pending follow-ups, no
lock, and no dispatch in the last ``grace`` seconds gets one run enqueued (a full one if a full request
waits). The check and the claim are one script, so two workers never both enqueue the same follow-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutting_down

from worker.celeryapp.config import SYNC_TASK, queue_for
from worker.infra.settings import Settings
from worker.sync.lock import FULL, followups_name, lock_name

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0

# KEYS: followups, lock. ARGV: grace seconds. Returns the pending modes it claimed, or {}.
# Most sources have no follow-up: one EXISTS answers for them.
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
  return {}
end
local pending = {}
for _, mode in ipairs({'full', 'incremental'}) do
  if redis.call('HEXISTS', KEYS[1], mode) == 1 then
    table.insert(pending, mode)
  end
end
if #pending == 0 then
  return {}
end
local now = tonumber(redis.call('TIME')[1])
local last = tonumber(redis.call('HGET', KEYS[1], 'dispatched_at') or '0')
if now - last < tonumber(ARGV[1]) then
  return {}
end
redis.call('HSET', KEYS[1], 'dispatched_at', now)
return pending
"""

Send = Callable[[str, bool], None]
# How long the sweeper reuses the list of source names before reading it again.
NAMES_TTL_SECONDS = 60.0


def grace_seconds(settings: Settings) -> float:
    """How long a dispatched follow-up may take to start before it is enqueued again."""
    return max(60.0, 4 * settings.sync_lock_ttl_seconds)


def sweep(client: redis.Redis, settings: Settings, send: Send, sources: list[str]) -> list[str]:
    """Enqueue one run for each source whose follow-ups are orphaned; returns those sources.

    The claims of all sources go in one pipelined round trip, however many sources the fleet has.
    """
    claim = client.register_script(CLAIM)
    prefix = settings.redis_key_prefix
    pipe = client.pipeline(transaction=False)
    for source in sources:
        keys = [followups_name(prefix, source), lock_name(prefix, source)]
        claim(keys=keys, args=[grace_seconds(settings)], client=pipe)
    swept = []
    for source, claimed in zip(sources, pipe.execute(), strict=True):
        pending = [m.decode() if isinstance(m, bytes) else str(m) for m in claimed]
        if pending:
            send(source, FULL in pending)
            swept.append(source)
    return swept


class SourceNames:
    """The configured sources' names, read at most every ``ttl`` seconds (a sweep every few seconds
    must not cost a database query each time)."""

    def __init__(self, read: Callable[[], list[str]], ttl: float = NAMES_TTL_SECONDS) -> None:
        self._read = read
        self._ttl = ttl
        self._names: list[str] = []
        self._read_at = float("-inf")

    def __call__(self) -> list[str]:
        now = time.monotonic()
        if now - self._read_at >= self._ttl:
            self._names = self._read()
            self._read_at = now
        return self._names


class Sweeper:
    """A daemon thread calling ``sweep`` every ``interval`` seconds until stopped."""

    def __init__(self, sweep_once: Callable[[], object], interval: float = SWEEP_SECONDS) -> None:
        self._sweep_once = sweep_once
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="followup-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._sweep_once()
            except Exception:  # Redis or the broker away: the next sweep tries again
                log.warning("follow-up sweep failed", exc_info=True)


def connect_followup_sweeper(
    settings: Settings,
    client_factory: Callable[[], redis.Redis],
    app: Any,
    source_names: Callable[[], list[str]],
) -> Callable[[], None]:
    """Run a sweeper in each worker's main process while it is up; returns a function that unwires it."""
    sweepers: list[Sweeper] = []
    names = SourceNames(source_names)

    def send(source: str, full: bool) -> None:
        app.send_task(SYNC_TASK, kwargs={"source": source, "full": full}, queue=queue_for(full))
        log.info("orphaned follow-up enqueued", extra={"source": source, "full": full})

    def sweep_if_our_turn() -> list[str]:
        # One worker of the fleet sweeps per interval: every one of them sweeping would only repeat it.
        client = client_factory()
        turn = f"{settings.redis_key_prefix}:followups:sweeping"
        if not client.set(turn, "1", nx=True, px=int(SWEEP_SECONDS * 1000)):
            return []
        return sweep(client, settings, send, names())

    def on_ready(**_: Any) -> None:
        sweeper = Sweeper(sweep_if_our_turn)
        sweeper.start()
        sweepers.append(sweeper)

    def on_shutting_down(**_: Any) -> None:
        for sweeper in sweepers:
            sweeper.stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutting_down, weak=False)

    def disconnect() -> None:
        worker_ready.disconnect(on_ready)
        worker_shutting_down.disconnect(on_shutting_down)

    return disconnect
