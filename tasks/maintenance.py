"""Housekeeping tasks: keep the history tables bounded by their retention."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict
from typing import Any

from celery import Task

from worker.celeryapp.app import app
from worker.celeryapp.shutdown import TimeBudget, shutdown_requested
from worker.sync import retention

log = logging.getLogger(__name__)

PRUNE_FAILED_EVENT = "maintenance.prune_failed"
ERROR_MAX = 500


# Celery's decorator is untyped; the task keeps .delay()/.apply_async() either way.
@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name="tasks.maintenance.prune_history",
    # Redelivered after a crash: deleting what is already gone is harmless.
    acks_late=True,
    ignore_result=False,
)
def prune_history(self: Task[Any, Any]) -> dict[str, Any]:
    """Delete runs and events older than HISTORY_RETENTION_DAYS / EVENT_RETENTION_DAYS.

    Stops between batches on a warm shutdown or near the soft time limit; the next run goes on where
    this one stopped, since the rows left are still the oldest.
    """
    from worker.celeryapp import deps

    settings = deps.get_settings()
    budget = TimeBudget.for_task(self.request, settings.celery_task_soft_time_limit)
    try:
        report = retention.prune_history(
            deps.get_session_factory(),
            now=dt.datetime.now(dt.UTC),
            runs_older_than=dt.timedelta(days=settings.history_retention_days),
            events_older_than=dt.timedelta(days=settings.event_retention_days),
            should_stop=lambda: shutdown_requested() or budget.spent(),
        )
    except Exception as exc:
        payload = {"error": type(exc).__name__, "message": str(exc)[:ERROR_MAX]}
        deps.get_event_log().record(PRUNE_FAILED_EVENT, correlation_id=self.request.id, payload=payload)
        log.error("history prune failed", extra={"error": payload["error"]}, exc_info=True)
        raise
    log.info("history pruned", extra=asdict(report))
    return asdict(report)
