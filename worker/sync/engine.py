"""``run_sync``: lock the source, open a run, run its pass, and close the run with its outcome.

A request that meets a run holding the source is deferred: the lock script records a follow-up, and
the run that holds the source hands the pending follow-ups to ``dispatch_followups`` when it
releases the lock. A run that is stopped (warm shutdown, its time budget, Celery's soft time limit)
ends ``interrupted`` and resumable, its last page and checkpoint committed.

The correlation id of a run is ``"<source>:<run_id>"`` (the ``sync_runs`` row id); it is bound into the
logs and stamped on every event the run records, the Celery task id is kept on the run row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from worker.infra import metrics
from worker.infra.errors import CANCELLATIONS, BudgetPaused, CircuitOpenError, UpstreamError
from worker.infra.logs import log_context
from worker.infra.settings import Settings
from worker.sync import fence
from worker.sync.context import RunContext, StopRequested, transaction
from worker.sync.lock import Deferred, Holder, LockHeartbeat, LockLost, RunLock, mode_of
from worker.sync.outcome import Counts, RunStatus
from worker.sync.protocols import EventSink
from worker.sync.runs import close_stale_runs, finish_run, open_run, record_skipped_run
from worker.sync.state import (
    STATE,
    Bookmark,
    complete_pass,
    load_bookmark,
    record_outcome,
    save_checkpoint,
)

if TYPE_CHECKING:
    from worker.kinds.base import SourceKind

# How long a run waits for the source's state row when it starts (a stalled run may hold it).
CLAIM_LOCK_TIMEOUT_MS = 10_000
# Checkpoint key: an earlier delivery of this pass skipped a malformed record.
HELD = "watermark_held"

logger = logging.getLogger(__name__)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class SyncDeps:
    """Everything a run of one source needs: ``settings`` are the source's own (``kind.configure``),
    ``client`` is the kind's client behind the source's breaker."""

    settings: Settings
    session_factory: Callable[[], Session]
    redis: Redis
    event_log: EventSink
    breaker: Any
    client: Any
    kind: SourceKind
    clock: Callable[[], dt.datetime] = utcnow


@dataclass
class RunResult:
    run_id: int | None
    status: RunStatus
    counts: Counts = field(default_factory=Counts)
    retry_after: float | None = None
    resumable: bool = False
    error: str | None = None
    # Deferred: who holds the source, and whether this request started the follow-up or joined it.
    holder: dict[str, Any] | None = None
    coalesced: bool = False
    committed: int = 0  # transactions the run committed: did this delivery make progress?


def run_sync(
    source: str,
    deps: SyncDeps,
    *,
    full: bool,
    task_id: str | None,
    should_stop: Callable[[], bool],
    request: int = 0,
    dispatch_followups: Callable[[list[str]], None] | None = None,
) -> RunResult:
    """Run one sync of ``source`` for request number ``request``; never overlaps another run of it (a
    request that meets one is deferred to a follow-up run)."""
    settings = deps.settings
    holder = Holder.here(task_id, mode_of(full))
    lock = RunLock(deps.redis, settings.redis_key_prefix, source, settings.sync_lock_ttl_seconds, holder)
    got = lock.acquire(request)
    if isinstance(got, Deferred):
        return _defer(source, deps, got, full=full, task_id=task_id)
    result: RunResult | None = None
    try:
        with LockHeartbeat(lock, settings.sync_lock_ttl_seconds / 3):
            result = _run_locked(source, deps, lock, full=full, task_id=task_id, should_stop=should_stop)
            return result
    finally:
        # A pass handed back is continued by its own message: the follow-ups wait for its real end.
        handed_back = result is not None and result.status is RunStatus.INTERRUPTED and result.resumable
        _release(lock, None if handed_back else dispatch_followups)


def _release(lock: RunLock, dispatch_followups: Callable[[list[str]], None] | None) -> None:
    try:
        pending = lock.release()
    except Exception:
        # The lock expires by itself; a follow-up left pending is served by the next run.
        logger.warning("sync lock release failed; the lock expires and the sweeper serves follow-ups",
                       exc_info=True)  # fmt: skip
        return
    if pending and dispatch_followups is not None:
        try:
            dispatch_followups(pending)
        except Exception:
            logger.error("could not enqueue follow-up runs %s; the next run serves them", pending,
                         exc_info=True)  # fmt: skip


def _defer(source: str, deps: SyncDeps, got: Deferred, *, full: bool, task_id: str | None) -> RunResult:
    status = RunStatus.DEFERRED
    holder = got.holder.public() if got.holder is not None else None
    details = {"holder": holder, "followup": _mode(full), "coalesced": not got.created}
    with transaction(deps.session_factory) as conn:
        run_id = record_skipped_run(conn, source, full=full, task_id=task_id, status=status, now=deps.clock(),
                                    details=details)  # fmt: skip
    deps.event_log.record(
        "sync.deferred",
        aggregate_id=source,
        correlation_id=f"{source}:{run_id}",
        payload={"run_id": run_id, "full": full, "task_id": task_id, **details},
    )
    logger.info("sync deferred: a follow-up runs when the current run ends",
                extra={"source": source, "run_id": run_id, "coalesced": not got.created})  # fmt: skip
    metrics.record_sync_run(source, _mode(full), status.value, 0.0, Counts().as_dict())
    return RunResult(run_id, status, holder=holder, coalesced=not got.created)


def _mode(full: bool) -> str:
    return "full" if full else "incremental"


@contextlib.contextmanager
def _client_correlation(client: Any, correlation_id: str) -> Iterator[None]:
    """Stamp the run's correlation id on the (process-cached) client's failure events, then clear it."""
    if not hasattr(client, "correlation_id"):
        yield
        return
    client.correlation_id = correlation_id
    try:
        yield
    finally:
        client.correlation_id = None


@dataclass(frozen=True)
class Start:
    run_id: int
    fence: int
    serves_through: int
    bookmark: Bookmark  # read under the new token: the pass runs from it

    @property
    def fresh(self) -> bool:
        """No checkpoint of this mode: the pass starts from the beginning."""
        return not self.bookmark.checkpoint


class SourceBusy(LockLost):
    """The source's state row stayed locked (a stalled run's page transaction): try again later."""


def _start(source: str, deps: SyncDeps, *, full: bool, task_id: str | None) -> Start:
    """Claim the source's fencing token, close the rows of runs it fences out, open this run's row.

    The run serves the requests made before its *pass* started: a fresh pass, every request so far; a
    resumed pass, only those its checkpoint recorded when that pass started.
    """
    now = deps.clock()
    with transaction(deps.session_factory) as conn:
        if conn.dialect.name == "postgresql":
            # A run paused inside a page transaction holds the state row; don't queue behind it for long.
            conn.execute(text(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT_MS}ms'"))
        try:
            token, requests = fence.claim(conn, source)
        except OperationalError as exc:
            raise SourceBusy("the source's state row is locked by a stalled run") from exc
        bookmark = load_bookmark(conn, source, full=full)
        resumed = bookmark.checkpoint or {}
        serves_through = int(resumed.get("serves_through") or 0) if resumed else requests
        stale = close_stale_runs(conn, source, now=now)
        run_id = open_run(conn, source, full=full, task_id=task_id, now=now, fence=token,
                          serves_through=serves_through)  # fmt: skip
    for old in stale:
        deps.event_log.record(
            "sync.interrupted",
            aggregate_id=source,
            correlation_id=f"{source}:{old}",
            payload={
                "run_id": old,
                "closed_by_run": run_id,
                "reason": "its worker stopped, or it lost the source to this run",
            },
        )
    return Start(run_id, token, serves_through, bookmark)


def _run_locked(
    source: str,
    deps: SyncDeps,
    lock: RunLock,
    *,
    full: bool,
    task_id: str | None,
    should_stop: Callable[[], bool],
) -> RunResult:
    try:
        start = _start(source, deps, full=full, task_id=task_id)
    except SourceBusy as exc:
        return RunResult(None, RunStatus.INTERRUPTED, resumable=True, error=str(exc))
    if start.fresh:
        lock.clear_served(start.serves_through, full)
    run_id = start.run_id
    ctx = RunContext(
        spec=deps.kind.spec(source),
        full=full,
        run_id=run_id,
        correlation_id=f"{source}:{run_id}",
        session_factory=deps.session_factory,
        event_log=deps.event_log,
        lock=lock,
        should_stop=should_stop,
        clock=deps.clock,
        started_at=deps.clock(),
        fence=start.fence,
        serves_through=start.serves_through,
    )
    with (
        log_context(correlation_id=ctx.correlation_id, sync_source=source, run_id=run_id),
        _client_correlation(deps.client, ctx.correlation_id),
    ):
        try:
            result = _execute(ctx, deps, start.bookmark)
            result.committed = ctx.committed
        except Exception as exc:
            if _superseded(ctx):
                # Paused past its lock, its connection ended by PostgreSQL: a newer run has the source.
                result = RunResult(run_id, RunStatus.INTERRUPTED, ctx.counts, resumable=True,
                                   error=f"superseded by a newer run ({_describe(exc)})")  # fmt: skip
                _close(ctx, deps, result)
                return result
            # A bug or a database outage: close the run as failed if we still can, then let it surface.
            _close(ctx, deps, RunResult(run_id, RunStatus.FAILED, ctx.counts, error=_describe(exc)))
            raise
        try:
            _close(ctx, deps, result)
        except CANCELLATIONS:
            # The time limit fired while closing: the outcome stands; the next run closes the row.
            logger.warning("sync run could not be closed before the time limit", extra={"run_id": run_id})
        return result


def _superseded(ctx: RunContext) -> bool:
    """Whether a newer run holds the source (checked after an error; False if that cannot be told)."""
    if ctx.lock.lost:
        return True
    try:
        with transaction(ctx.session_factory) as conn:
            current = conn.execute(select(STATE.c.fence).where(STATE.c.source == ctx.spec.source))
            return current.scalar_one_or_none() != ctx.fence
    except Exception:
        return False


def _describe(exc: BaseException) -> str:
    # UpstreamError messages are built from redacted summaries; other errors carry no payloads.
    message = exc.message if isinstance(exc, UpstreamError) else str(exc)
    return f"{type(exc).__name__}: {message}"


def _pass(ctx: RunContext, deps: SyncDeps, bookmark: Bookmark) -> dt.datetime | None:
    return deps.kind.run_pass(ctx, deps.client, bookmark, deps.settings)


def _execute(ctx: RunContext, deps: SyncDeps, bookmark: Bookmark) -> RunResult:
    result = _attempt(ctx, deps, bookmark)
    if result.resumable and ctx.counts.skipped:
        _hold_watermark_for_the_next_delivery(ctx)
    return result


def _hold_watermark_for_the_next_delivery(ctx: RunContext) -> None:
    """Note in the checkpoint that this pass skipped a record, so its last delivery keeps the watermark."""
    with contextlib.suppress(Exception), ctx.fenced() as conn:
        checkpoint = load_bookmark(conn, ctx.spec.source, full=ctx.full).checkpoint
        if checkpoint:
            save_checkpoint(conn, ctx.spec.source, full=ctx.full, checkpoint={**checkpoint, HELD: True},
                            now=ctx.clock())  # fmt: skip


def _attempt(ctx: RunContext, deps: SyncDeps, bookmark: Bookmark) -> RunResult:
    run_id, counts = ctx.run_id, ctx.counts
    try:
        watermark = _pass(ctx, deps, bookmark)
    except StopRequested:
        return RunResult(run_id, RunStatus.INTERRUPTED, counts, resumable=True, error="stop requested")
    except CANCELLATIONS as exc:
        # Celery's time limit fired mid-page: that page rolled back, the checkpoint before it stands.
        return RunResult(run_id, RunStatus.INTERRUPTED, counts, resumable=True, error=type(exc).__name__)
    except LockLost as exc:
        return RunResult(run_id, RunStatus.INTERRUPTED, counts, resumable=True, error=str(exc))
    except BudgetPaused as exc:
        # The host asked the fleet to wait longer than a call may sleep: its pause, not an outage. The
        # checkpoint stands and the task comes back when the pause is over (tasks._settle).
        return RunResult(run_id, RunStatus.INTERRUPTED, counts, retry_after=exc.retry_after_seconds,
                         resumable=True, error=str(exc))  # fmt: skip
    except CircuitOpenError as exc:
        # Nothing fetched: a skip. Mid-run: the checkpoint stands and the next scheduled run resumes it
        # (not requeued at once, which would only meet the open breaker again).
        status = RunStatus.SKIPPED_BREAKER_OPEN if counts.fetched == 0 else RunStatus.INTERRUPTED
        return RunResult(run_id, status, counts, retry_after=exc.retry_after_seconds, error=str(exc))
    except UpstreamError as exc:
        return RunResult(run_id, RunStatus.FAILED, counts, error=_describe(exc))
    if counts.skipped or (bookmark.checkpoint or {}).get(HELD):
        # A record skipped as malformed was not stored: advancing the watermark past it would leave its
        # last good version in the mirror until the next full run. The next incremental run reads it
        # again (and skips it again, until upstream serves it whole).
        ctx.record_event("sync.watermark_held", {"skipped": counts.skipped})
        watermark = None
    try:
        with ctx.fenced() as conn:
            complete_pass(conn, ctx.spec.source, full=ctx.full, watermark=watermark, now=deps.clock())
    except LockLost as exc:
        return RunResult(run_id, RunStatus.INTERRUPTED, counts, resumable=True, error=str(exc))
    status = RunStatus.PARTIAL if counts.skipped or ctx.incomplete else RunStatus.SUCCEEDED
    return RunResult(run_id, status, counts)


def _next_attempt_at(deps: SyncDeps, retry_after: float | None) -> str | None:
    value: Any = None
    with contextlib.suppress(Exception):  # stats are a nicety; the exception's retry-after suffices
        value = getattr(deps.breaker.stats(), "next_attempt_at", None)
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()
    if retry_after is not None:
        return (deps.clock() + dt.timedelta(seconds=retry_after)).isoformat()
    return None


def _close(ctx: RunContext, deps: SyncDeps, result: RunResult) -> None:
    # ``resumable``: a later delivery continues this run's work (``sync --wait`` follows it there).
    details: dict[str, Any] = {"correlation_id": ctx.correlation_id, "resumable": result.resumable}
    if result.retry_after is not None:
        details["retry_after"] = result.retry_after
        details["next_attempt_at"] = _next_attempt_at(deps, result.retry_after)
    now = deps.clock()
    # Counted first: a database outage must not hide a run from the metrics as well.
    duration = max(0.0, (now - ctx.started_at).total_seconds())
    metrics.record_sync_run(ctx.spec.source, _mode(ctx.full), result.status.value, duration,
                            result.counts.as_dict())  # fmt: skip
    with transaction(deps.session_factory) as conn:
        finish_run(conn, ctx.run_id, status=result.status, counts=result.counts, now=now,
                   error=result.error, details=details)  # fmt: skip
    # The source's last outcome belongs to the run holding its token, not to one fenced out.
    with contextlib.suppress(LockLost), ctx.fenced() as conn:
        record_outcome(conn, ctx.spec.source, run_id=ctx.run_id, status=result.status, full=ctx.full, now=now)
    _record_outcome_event(ctx, result, details)
    logger.info(
        "sync finished",
        extra={"source": ctx.spec.source, "status": result.status.value, **result.counts.as_dict()},
    )


OUTCOME_EVENTS = {
    RunStatus.FAILED: "sync.failed",
    RunStatus.INTERRUPTED: "sync.interrupted",
    RunStatus.SKIPPED_BREAKER_OPEN: "sync.skipped_breaker_open",
}


def _record_outcome_event(ctx: RunContext, result: RunResult, details: dict[str, Any]) -> None:
    event = OUTCOME_EVENTS.get(result.status)
    if result.retry_after is not None:
        # Also when the breaker opened mid-run; resumable only when the host's budget paused it.
        event = "sync.budget_paused" if result.resumable else "sync.skipped_breaker_open"
    if event is None:
        return
    ctx.record_event(event, {**details, "status": result.status.value, "error": result.error,
                             "counts": result.counts.as_dict(), "resumable": result.resumable})  # fmt: skip
