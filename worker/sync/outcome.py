"""What a run ends as, and what it counted."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    SKIPPED_BREAKER_OPEN = "skipped_breaker_open"
    SKIPPED_ALREADY_RUNNING = "skipped_already_running"  # rows written before follow-ups existed
    DEFERRED = "deferred"  # another run held the source: a follow-up run serves this request
    INTERRUPTED = "interrupted"


@dataclass
class Counts:
    """Per-run record counts, stored on the ``sync_runs`` row.

    ``skipped`` counts records that failed validation (logged and skipped); ``failed`` counts records
    of a page that could not be stored; ``marked_deleted`` rows reconciliation found gone upstream.
    """

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    marked_deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def copy(self) -> Counts:
        return replace(self)

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.marked_deleted
