"""Celery tasks: thin wrappers that build dependencies and call the sync engine.

``execute`` is the body both tasks share: redelivery cap, ``run_sync``, and what to do with the
message afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject

from worker.shutdown import shutdown_requested
from worker.sync import RunResult, RunStatus, SyncSource, run_sync

log = logging.getLogger(__name__)

REDELIVERY_LIMIT_EVENT = "sync.redelivery_limit"


class DeliveryGuard:
    """Counts deliveries of one task id that did not end cleanly, so a poison message stops looping.

    The count goes up when a delivery starts and is undone when the run hands its work back on purpose
    (warm shutdown), so only crashes count: a message that kills its worker every time is dropped
    after ``max_redeliveries`` redeliveries instead of killing the fleet forever.
    """

    def __init__(self, client: redis.Redis, prefix: str, max_redeliveries: int, ttl_seconds: int) -> None:
        self.client = client
        self.prefix = prefix
        self.max_redeliveries = max_redeliveries
        self.ttl_seconds = ttl_seconds

    def key(self, task_id: str) -> str:
        return f"{self.prefix}:deliveries:{task_id}"

    def begin(self, task_id: str) -> int:
        """Count this delivery; returns how many unclean deliveries there have been, this one included."""
        pipe = self.client.pipeline()
        pipe.incr(self.key(task_id))
        pipe.expire(self.key(task_id), self.ttl_seconds)
        count, _ = pipe.execute()
        return int(count)

    def over_limit(self, count: int) -> bool:
        return count > 1 + self.max_redeliveries

    def handed_back(self, task_id: str) -> None:
        self.client.decr(self.key(task_id))

    def finished(self, task_id: str) -> None:
        self.client.delete(self.key(task_id))


def summary(source: SyncSource, full: bool, result: RunResult) -> dict[str, Any]:
    """The small JSON-able result stored in the result backend."""
    return {
        "source": str(source),
        "full": full,
        "run_id": result.run_id,
        "status": str(result.status),
        "counts": asdict(result.counts),
        "retry_after": result.retry_after,
    }


def _guard() -> DeliveryGuard:
    from worker.deps import get_redis, get_settings

    settings = get_settings()
    ttl = settings.celery_visibility_timeout * (settings.sync_max_redeliveries + 2)
    return DeliveryGuard(get_redis(), settings.redis_key_prefix, settings.sync_max_redeliveries, ttl)


def _drop(source: SyncSource, full: bool, task_id: str, count: int, guard: DeliveryGuard) -> dict[str, Any]:
    from worker.deps import get_event_log

    get_event_log().record(
        REDELIVERY_LIMIT_EVENT,
        aggregate_id=str(source),
        correlation_id=task_id,
        payload={"deliveries": count, "max_redeliveries": guard.max_redeliveries, "full": full},
    )
    guard.finished(task_id)
    log.error("sync message dropped after repeated crashes", extra={"task_id": task_id})
    return {"source": str(source), "full": full, "run_id": None, "status": "redelivery_limit"}


def execute(task: Task[Any, Any], source: SyncSource, *, full: bool) -> dict[str, Any]:
    """Run one sync for a delivered message and decide the message's fate.

    Raises:
        Reject: with ``requeue=True`` when a warm shutdown interrupted the run; the next delivery
            resumes from the checkpoint the engine committed.
        Retry: when a redelivered message meets the run lock its own crashed delivery left behind.
    """
    from worker.deps import get_deps, get_settings

    task_id: str | None = task.request.id
    guard = _guard()
    count = guard.begin(task_id) if task_id is not None else 1
    if task_id is not None and guard.over_limit(count):
        return _drop(source, full, task_id, count, guard)
    result = run_sync(source, get_deps(source), full=full, task_id=task_id, should_stop=shutdown_requested)
    handed_back = result.status is RunStatus.INTERRUPTED and result.resumable
    # After a crash the message can come back before the dead run's lock expires (at once when a pool
    # child is killed); skipping would ack it and drop the rest of that run, so try again after the TTL.
    crashed_before = result.status is RunStatus.SKIPPED_ALREADY_RUNNING and count > 1
    if task_id is not None and (handed_back or crashed_before):
        guard.handed_back(task_id)
    elif task_id is not None:
        guard.finished(task_id)
    if handed_back:
        # Reject(requeue=True) puts this very message back on the broker (same id, same arguments) and
        # is not a failure: no result is stored, no retry budget is spent, and with the Redis transport
        # it is pushed back to the queue at once rather than waiting out the visibility timeout.
        raise Reject("warm shutdown: work handed back to the queue", requeue=True)
    if crashed_before:
        raise task.retry(countdown=get_settings().sync_lock_ttl_seconds + 1, max_retries=None)
    # An open breaker is not retried here: the next beat tick comes within minutes, and a countdown
    # would sit unacked in a worker, competing with the visibility timeout and with those ticks.
    return summary(source, full, result)
