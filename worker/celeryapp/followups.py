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
from collections.abc import Callable
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutting_down

from worker.celeryapp.config import ODOO_QUEUE, WOOCOMMERCE_QUEUE
from worker.celeryapp.schedule import ODOO_TASK, WOOCOMMERCE_TASK
from worker.infra.settings import Settings
from worker.sync.lock import FULL, followups_name, lock_name
from worker.sync.sources import SyncSource

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0

# KEYS: followups, lock. ARGV: grace seconds. Returns the pending modes it claimed, or {}.
CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then
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

Send = Callable[[SyncSource, bool], None]
TASKS = {
    SyncSource.ODOO_SUPPLIERS: (ODOO_TASK, ODOO_QUEUE),
    SyncSource.WOOCOMMERCE_PRODUCTS: (WOOCOMMERCE_TASK, WOOCOMMERCE_QUEUE),
}


def grace_seconds(settings: Settings) -> float:
    """How long a dispatched follow-up may take to start before it is enqueued again."""
    return max(60.0, 4 * settings.sync_lock_ttl_seconds)


def sweep(client: redis.Redis, settings: Settings, send: Send) -> list[SyncSource]:
    """Enqueue one run for each source whose follow-ups are orphaned; returns those sources."""
    claim = client.register_script(CLAIM)
    swept = []
    prefix = settings.redis_key_prefix
    for source in SyncSource:
        keys = [followups_name(prefix, source), lock_name(prefix, source)]
        claimed = claim(keys, [grace_seconds(settings)])
        pending = [m.decode() if isinstance(m, bytes) else str(m) for m in claimed]
        if pending:
            send(source, FULL in pending)
            swept.append(source)
    return swept


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
    settings: Settings, client_factory: Callable[[], redis.Redis], app: Any
) -> Callable[[], None]:
    """Run a sweeper in each worker's main process while it is up; returns a function that unwires it."""
    sweepers: list[Sweeper] = []

    def send(source: SyncSource, full: bool) -> None:
        task, queue = TASKS[source]
        app.send_task(task, kwargs={"full": full}, queue=queue)
        log.info("orphaned follow-up enqueued", extra={"source": source.value, "full": full})

    def on_ready(**_: Any) -> None:
        sweeper = Sweeper(lambda: sweep(client_factory(), settings, send))
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
