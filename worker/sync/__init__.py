"""The sync engine: normalise, validate, upsert per page, checkpoints, run bookkeeping, locks, reconciliation.

The Celery tasks build a ``SyncDeps`` and call ``run_sync``; everything else here is plain functions.
"""

from worker.sync.engine import RunResult, SyncDeps, run_sync
from worker.sync.outcome import Counts, RunStatus
from worker.sync.sources import SyncSource

__all__ = ["Counts", "RunResult", "RunStatus", "SyncDeps", "SyncSource", "run_sync"]
