"""The task name of the environment-configured Odoo source before sources were configurable.

Kept so a message of an earlier release that reaches a worker still runs (routed by its mode, like every
sync); new requests use ``tasks.sync``. Messages left in the old ``odoo`` queue are not consumed: drain them
before upgrading.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks import execute
from worker.celeryapp.app import app
from worker.sync import SyncSource


# Celery's decorator is untyped; the task keeps .delay()/.apply_async() either way.
@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name="tasks.odoo.sync_suppliers",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=False,
)
def sync_suppliers(self: Task[Any, Any], full: bool = False, request: int | None = None) -> dict[str, Any]:
    """Mirror Odoo suppliers; ``full=True`` reconciles the whole set.

    ``request`` is the request number ``tasks.enqueue`` gives (None from beat: numbered on delivery).
    """
    return execute(self, SyncSource.ODOO_SUPPLIERS, full=full, request=request)
