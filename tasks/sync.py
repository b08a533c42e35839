"""The sync task: one run of one configured source, named by its source only (never its credentials)."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks import execute
from worker.celeryapp.app import app


# Celery's decorator is untyped; the task keeps .delay()/.apply_async() either way.
@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name="tasks.sync.sync_source",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=False,
)
def sync_source(
    self: Task[Any, Any], source: str, full: bool = False, request: int | None = None
) -> dict[str, Any]:
    """Mirror the source called ``source``; ``full=True`` reconciles its whole catalog.

    ``request`` is the request number ``tasks.enqueue`` gives (None from beat: numbered on delivery).
    Routed by mode: full runs and incremental runs have queues (and worker pools) of their own.
    """
    return execute(self, source, full=full, request=request)
