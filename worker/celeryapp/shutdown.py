"""The warm-shutdown path: a per-node Redis flag that running tasks poll, plus SIGQUIT escalation.

No task can see a warm shutdown through Celery itself: ``celery.worker.state.should_stop`` is only set
in the worker's main process, never in prefork children. So the main process raises a flag in Redis
on ``worker_shutting_down``, tasks poll it between pages, save their checkpoint and hand the rest of
their work back to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import current_task
from celery.signals import worker_ready, worker_shutting_down

from worker.infra.settings import Settings

log = logging.getLogger(__name__)

# Tasks poll between pages; caching the answer briefly keeps a fast page loop off Redis.
POLL_CACHE_SECONDS = 0.5


def flag_key(prefix: str, nodename: str) -> str:
    return f"{prefix}:shutdown:{nodename}"


class ShutdownFlag:
    """The flag of one worker node. The TTL outlives any task the node can still be running."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def raise_for(self, nodename: str) -> None:
        self.client.set(flag_key(self.prefix, nodename), "1", ex=self.ttl_seconds)

    def clear_for(self, nodename: str) -> None:
        self.client.delete(flag_key(self.prefix, nodename))

    def is_raised(self, nodename: str) -> bool:
        return bool(self.client.exists(flag_key(self.prefix, nodename)))


class CachedProbe:
    """``is_raised(node)`` answered from a short cache; a Redis error reads as "keep going"."""

    def __init__(
        self,
        flag: ShutdownFlag,
        *,
        ttl: float = POLL_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.flag = flag
        self.ttl = ttl
        self.clock = clock
        self._cached: tuple[str, float, bool] | None = None

    def __call__(self, nodename: str) -> bool:
        now = self.clock()
        if self._cached is not None:
            node, at, value = self._cached
            if node == nodename and now - at < self.ttl:
                return value
        try:
            value = self.flag.is_raised(nodename)
        except redis.RedisError:
            # Without Redis the run cannot tell; finishing it is safer than abandoning it.
            log.warning("shutdown flag unreadable", extra={"node": nodename}, exc_info=True)
            value = False
        self._cached = (nodename, now, value)
        return value


_probe: CachedProbe | None = None


def flag_for(settings: Settings, client: redis.Redis) -> ShutdownFlag:
    return ShutdownFlag(client, settings.redis_key_prefix, settings.celery_task_time_limit + 60)


def shutdown_requested() -> bool:
    """True once the worker running the current task has begun a warm shutdown."""
    global _probe
    nodename = getattr(current_task.request, "hostname", None) if current_task else None
    if not nodename:
        return False
    if _probe is None:
        from worker.celeryapp.deps import get_redis, get_settings

        _probe = CachedProbe(flag_for(get_settings(), get_redis()))
    return _probe(nodename)


def start_escalation(delay: float, *, pid: int | None = None) -> threading.Timer:
    """SIGQUIT ourselves after ``delay`` so messages are restored before an orchestrator's SIGKILL.

    A daemon timer: a non-daemon one keeps an already finished worker alive until it fires.
    """
    target = os.getpid() if pid is None else pid
    timer = threading.Timer(delay, os.kill, args=(target, signal.SIGQUIT))
    timer.daemon = True
    timer.start()
    return timer


def connect_shutdown_signals(
    settings: Settings, client_factory: Callable[[], redis.Redis]
) -> Callable[[], None]:
    """Wire the flag to the worker's main-process signals; returns a function that unwires it."""

    def on_shutting_down(sender: str | None = None, how: str | None = None, **_: Any) -> None:
        if not sender:
            return
        try:
            flag_for(settings, client_factory()).raise_for(sender)
        except redis.RedisError:
            log.error("could not raise the shutdown flag", extra={"node": sender}, exc_info=True)
        delay = settings.celery_shutdown_escalate_seconds
        if how == "Warm" and delay is not None:
            start_escalation(delay)

    def on_ready(sender: Any = None, **_: Any) -> None:
        nodename = getattr(sender, "hostname", None)
        if nodename:
            # A restarted node reuses its name: a stale flag would interrupt its first task.
            flag_for(settings, client_factory()).clear_for(nodename)

    worker_shutting_down.connect(on_shutting_down, weak=False)
    worker_ready.connect(on_ready, weak=False)

    def disconnect() -> None:
        worker_shutting_down.disconnect(on_shutting_down)
        worker_ready.disconnect(on_ready)

    return disconnect


class TimeBudget:
    """How long a delivery may run before it stops at a page boundary and hands the rest back.

    Celery's soft time limit raises ``SoftTimeLimitExceeded`` wherever the task happens to be; a run
    that stops itself a margin earlier commits its page and checkpoint first, the way a warm shutdown
    does. The margin is a fifth of the limit, at most a minute: room for the page in flight.
    """

    def __init__(self, soft_limit: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds = soft_limit - min(60.0, soft_limit / 5)
        self.started = clock()

    @classmethod
    def for_task(cls, request: Any, default_soft_limit: float) -> TimeBudget:
        """The budget of the delivery ``request`` describes (a per-call limit wins over the default)."""
        limits = getattr(request, "timelimit", None) or (None, None)
        soft = limits[1] if len(limits) > 1 and limits[1] else default_soft_limit
        return cls(float(soft))

    def spent(self) -> bool:
        return self.clock() - self.started >= self.seconds
