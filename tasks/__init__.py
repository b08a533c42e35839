"""Celery tasks: thin wrappers that build dependencies and call the sync engine.

``execute`` is the body both tasks share: redelivery cap, request numbering, ``run_sync``, and what
the message ends as. Each outcome ends in a state of its own, so Flower, the result backend,
``syncworker runs`` and ``sync --wait`` tell the same story:

============================  =======================================================
run outcome                   task state
============================  =======================================================
succeeded / already served    ``SUCCESS`` (the summary names the run)
partial                       ``PARTIAL``
failed, redelivery limit      ``FAILURE`` with ``SyncRunFailed`` (type, message, run id)
breaker open                  ``SKIPPED``
deferred (follow-up queued)   ``DEFERRED``
interrupted, not resumable    ``INTERRUPTED``
interrupted, resumable        rejected and requeued (the next delivery resumes it)
============================  =======================================================
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Ignore, Reject

from worker.celeryapp.config import SYNC_TASK, queue_for
from worker.celeryapp.shutdown import TimeBudget, shutdown_requested
from worker.infra.errors import CANCELLATIONS, SyncRunFailed
from worker.sync import RunResult, RunStatus, run_sync
from worker.sync.lock import followups_name
from worker.sync.requests import number_request
from worker.sync.runs import served_by

log = logging.getLogger(__name__)

REDELIVERY_LIMIT_EVENT = "sync.redelivery_limit"
# Custom task states: Flower shows them as they are (a ``task-<state>`` event), the result backend
# stores them with the summary as their result.
STATES = {
    RunStatus.PARTIAL: "PARTIAL",
    RunStatus.SKIPPED_BREAKER_OPEN: "SKIPPED",
    RunStatus.DEFERRED: "DEFERRED",
    RunStatus.INTERRUPTED: "INTERRUPTED",
}


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
        # Never below zero: a counter that expired meanwhile must not turn into a credit of crashes.
        if self.client.decr(self.key(task_id)) < 0:
            self.client.set(self.key(task_id), 0, ex=self.ttl_seconds)

    def finished(self, task_id: str) -> None:
        self.client.delete(self.key(task_id))


def summary(source: str, full: bool, result: RunResult, request: int | None = None) -> dict[str, Any]:
    """The small JSON-able result stored in the result backend (no secrets: no arguments, no URLs)."""
    meta = {
        "source": str(source),
        "full": full,
        "run_id": result.run_id,
        "status": str(result.status),
        "counts": asdict(result.counts),
        "retry_after": result.retry_after,
        "request": request,
        "error": result.error,
    }
    if result.status is RunStatus.DEFERRED:
        # Who holds the source (host, pid, task id, mode), and whether a follow-up was already pending.
        meta |= {"holder": result.holder, "coalesced": result.coalesced}
    return meta


def _guard() -> DeliveryGuard:
    from worker.celeryapp.deps import get_redis, get_settings

    settings = get_settings()
    ttl = settings.celery_visibility_timeout * (settings.sync_max_redeliveries + 2)
    return DeliveryGuard(get_redis(), settings.redis_key_prefix, settings.sync_max_redeliveries, ttl)


def _drop(source: str, full: bool, task_id: str, count: int, guard: DeliveryGuard) -> SyncRunFailed:
    from worker.celeryapp.deps import get_event_log

    get_event_log().record(
        REDELIVERY_LIMIT_EVENT,
        aggregate_id=str(source),
        correlation_id=task_id,
        payload={"deliveries": count, "max_redeliveries": guard.max_redeliveries, "full": full},
    )
    guard.finished(task_id)
    log.error("sync message dropped after repeated crashes", extra={"task_id": task_id})
    return SyncRunFailed(f"{source}: dropped after {count} deliveries that did not finish (redelivery_limit)")


SOURCE_UNUSABLE_EVENT = "sync.source_unusable"


def _drop_unusable(source: str, full: bool, task_id: str | None, reason: str) -> None:
    """A request for a source that is disabled, removed or unusable: say so once, and drop the
    follow-ups waiting for it (the sweeper would otherwise send them again every minute)."""
    from worker.celeryapp.deps import get_event_log, get_redis, get_settings

    get_event_log().record(SOURCE_UNUSABLE_EVENT, aggregate_id=str(source), correlation_id=task_id,
                           payload={"full": full, "reason": reason})  # fmt: skip
    get_redis().delete(followups_name(get_settings().redis_key_prefix, str(source)))
    log.warning("sync request dropped: %s", reason, extra={"source": str(source), "full": full})


def finish_as(task: Task[Any, Any], state: str, meta: dict[str, Any]) -> NoReturn:
    """End the task in a custom ``state``: stored in the backend, sent to Flower, message acked."""
    task.update_state(state=state, meta=meta)
    task.send_event(f"task-{state.lower()}", result=meta)
    raise Ignore


def request_of(task: Task[Any, Any], source: str, given: int | None) -> int:
    """This message's request number: given by whoever enqueued it, else fixed at its first delivery
    (kept in Redis under the task id, so a redelivery keeps it; lost with Redis, it is only renumbered,
    which can cost a run, never skip one)."""
    from worker.celeryapp.deps import get_redis, get_session_factory, get_settings

    if given is not None:
        return int(given)
    task_id = task.request.id
    if task_id is None:  # called in process: every call is a request of its own
        return number_request(get_session_factory(), source)
    settings = get_settings()
    client = get_redis()
    key = f"{settings.redis_key_prefix}:request:{task_id}"
    known = client.get(key)
    if known is not None:
        return int(known)
    ttl = settings.celery_visibility_timeout * (settings.sync_max_redeliveries + 2)
    number = number_request(get_session_factory(), source)
    client.set(key, number, nx=True, ex=ttl)
    # Another copy of this message may have numbered it first; if Redis lost the key meanwhile, ours.
    known = client.get(key)
    return int(known) if known is not None else number


def enqueue(app: Any, source: str, *, full: bool) -> tuple[str, int]:
    """Send one request for ``source`` and return its task id and request number.

    Only the source's name, the mode and the request number travel: credentials stay in the workers.
    """
    from worker.celeryapp.deps import get_session_factory

    number = number_request(get_session_factory(), source)
    kwargs = {"source": str(source), "full": full, "request": number}
    return str(app.send_task(SYNC_TASK, kwargs=kwargs, queue=queue_for(full)).id), number


def followups_for(task: Task[Any, Any], source: str) -> Any:
    def dispatch(pending: list[str]) -> None:
        # A full run serves incremental requests too: never two follow-ups where one does.
        full = "full" in pending
        task_id, number = enqueue(task.app, source, full=full)
        log.info("follow-up run enqueued", extra={"source": str(source), "full": full, "task_id": task_id,
                                                   "request": number})  # fmt: skip

    return dispatch


def _served(source: str, request: int, full: bool) -> int | None:
    from worker.celeryapp.deps import get_session_factory

    with get_session_factory()() as session:
        return served_by(session.connection(), source, request=request, full=full)


def execute(task: Task[Any, Any], source: str, *, full: bool, request: int | None = None) -> dict[str, Any]:
    """Run one sync for a delivered message and decide the message's fate (see the table above).

    Raises:
        Reject: with ``requeue=True`` when a warm shutdown or the time budget interrupted the run;
            the next delivery resumes from the checkpoint the engine committed.
        SyncRunFailed: the run failed (or the message kept crashing its worker).
        Retry: a redelivered message met a lock its own crashed delivery may have left behind.
    """
    from worker.celeryapp.deps import SourceDisabled, SourceMisconfigured, get_deps, get_settings
    from worker.sources.catalog import UnknownSource

    settings = get_settings()
    task_id: str | None = task.request.id
    try:
        deps = get_deps(source)
    except (UnknownSource, SourceMisconfigured) as exc:
        # Removed since the message was sent, or unusable as stored: retrying cannot help.
        _drop_unusable(source, full, task_id, str(exc))
        raise SyncRunFailed(str(exc)) from None
    except SourceDisabled as exc:
        _drop_unusable(source, full, task_id, str(exc))
        finish_as(task, "SKIPPED", {"source": str(source), "full": full, "status": "disabled"})
    guard = _guard()
    count = guard.begin(task_id) if task_id is not None else 1
    if task_id is not None and guard.over_limit(count):
        raise _drop(source, full, task_id, count, guard)
    number = request_of(task, source, request)
    served = _served(source, number, full)
    if served is not None:
        # A run that started after this request finished (the redelivery of a crashed run, or a
        # follow-up overtaken by another run): the work is done.
        if task_id is not None:
            guard.finished(task_id)
        return {"source": str(source), "full": full, "run_id": served, "status": "served", "request": number}
    budget = TimeBudget.for_task(task.request, settings.celery_task_soft_time_limit)
    try:
        result = run_sync(source, deps, full=full, task_id=task_id, request=number,
                          should_stop=lambda: shutdown_requested() or budget.spent(),
                          dispatch_followups=followups_for(task, source))  # fmt: skip
    except CANCELLATIONS as exc:
        # The soft time limit fired outside a page (opening or closing the run): hand it back.
        result = RunResult(None, RunStatus.INTERRUPTED, resumable=True, error=type(exc).__name__)
    return _settle(task, source, full, result, number, count, guard, timed_out=budget.spent())


def _settle(
    task: Task[Any, Any],
    source: str,
    full: bool,
    result: RunResult,
    number: int,
    count: int,
    guard: DeliveryGuard,
    *,
    timed_out: bool,
) -> dict[str, Any]:
    from worker.celeryapp.deps import get_settings

    task_id: str | None = task.request.id
    handed_back = result.status is RunStatus.INTERRUPTED and result.resumable
    # A redelivered message can meet the lock its own killed delivery left on another host: the
    # follow-up is recorded, but nobody may be left to release it, so look again after the TTL.
    crashed_before = result.status is RunStatus.DEFERRED and count > 1
    # A delivery that committed nothing before its time ran out counts as a crash, so a page that never
    # fits in the time budget cannot loop forever. A warm shutdown is never the message's fault.
    cancelled = result.error in {c.__name__ for c in CANCELLATIONS}
    progressed = result.committed > 0 or not (timed_out or cancelled)
    if task_id is not None and ((handed_back and progressed) or crashed_before):
        guard.handed_back(task_id)
    elif task_id is not None and not handed_back:
        guard.finished(task_id)
    if handed_back and result.retry_after is not None:
        # The host's budget is paused (a long Retry-After): come back when it is over. The countdown
        # is at most RETRY_AFTER_CAP_SECONDS, which the settings keep below the visibility timeout.
        raise task.retry(countdown=result.retry_after, max_retries=None)
    if handed_back:
        # Reject(requeue=True) puts this very message back on the broker (same id, same arguments) and
        # is not a failure: no result is stored, no retry budget is spent, and with the Redis transport
        # it is pushed back to the queue at once rather than waiting out the visibility timeout.
        raise Reject("interrupted: work handed back to the queue", requeue=True)
    if crashed_before:
        raise task.retry(countdown=get_settings().sync_lock_ttl_seconds + 1, max_retries=None)
    meta = summary(source, full, result, number)
    if result.status is RunStatus.FAILED:
        raise SyncRunFailed(f"{source} run {result.run_id} failed: {result.error}")
    state = STATES.get(result.status)
    if state is not None:
        # An open breaker is not retried here: the next beat tick comes within minutes, and a
        # countdown would sit unacked in a worker, competing with the visibility timeout.
        finish_as(task, state, meta)
    return meta
