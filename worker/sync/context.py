"""A running sync's working state: normalise and store pages, checkpoint, count, poll for a stop.

Both sources' passes drive their pages through ``RunContext``; the order is always normalise ->
renew the lock -> upsert, checkpoint and the run row's counts in one transaction -> poll
``should_stop``. A heartbeat thread renews the lock in between (see ``lock.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from worker.infra.errors import InvalidRecord
from worker.sync import fence
from worker.sync.lock import LockLost, RunLock
from worker.sync.outcome import Counts
from worker.sync.protocols import EventSink
from worker.sync.runs import update_run_counts
from worker.sync.sources import SourceSpec
from worker.sync.state import save_checkpoint
from worker.sync.store import PageWrite, prepare_rows, upsert_prepared

Normalizer = Callable[[Mapping[str, Any]], dict[str, Any]]
REASON_MAX = 500


class StopRequested(Exception):
    """``should_stop()`` turned true; the last page and its checkpoint are committed."""


@contextmanager
def transaction(session_factory: Callable[[], Session]) -> Iterator[Connection]:
    """One committed-or-rolled-back transaction on a connection of the session factory's engine."""
    with session_factory() as session, session.begin():
        yield session.connection()


def relax_durability(conn: Connection) -> None:
    """Let PostgreSQL acknowledge this page's commit before its WAL reaches the disk.

    Safe because a page and its checkpoint commit together: a database crash can only lose the last
    few pages *and* their checkpoints, and the next run re-reads exactly those pages. It saves one
    disk flush per page, which is most of the time a page write waits.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL synchronous_commit = off"))


def _invalid_id(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("id")
    return str(value)[:64] if value is not None else None


@dataclass(frozen=True)
class StagedPage:
    """A page ready to commit: prepared rows, what commits with them, and the counts it follows."""

    prepared: list[dict[str, Any]]
    size: int
    checkpoint: dict[str, Any] | None
    also: Callable[[Connection], None] | None
    seen: tuple[int, int]  # (fetched, skipped) once this page was normalised


@dataclass
class RunContext:
    spec: SourceSpec
    full: bool
    run_id: int
    correlation_id: str
    session_factory: Callable[[], Session]
    event_log: EventSink
    lock: RunLock
    should_stop: Callable[[], bool]
    clock: Callable[[], dt.datetime]
    started_at: dt.datetime
    fence: int = 0
    # The newest request this run's pass serves: a fresh pass records it in its first checkpoint.
    serves_through: int = 0
    counts: Counts = field(default_factory=Counts)
    # Why this run cannot vouch for the whole mirror (a reconciliation it had to skip): ends ``partial``.
    incomplete: list[str] = field(default_factory=list)
    # Transactions this run committed (pages, checkpoints): whether a delivery made any progress.
    committed: int = 0
    # Ids of the records this run reported invalid, so a later step does not read and report them again.
    invalid_ids: set[str] = field(default_factory=set)

    def normalize_page(
        self, raws: Sequence[Mapping[str, Any]], normalize: Normalizer
    ) -> list[dict[str, Any]]:
        """Valid rows of a fetched page; each invalid record is logged, counted and skipped."""
        self.counts.fetched += len(raws)
        rows: list[dict[str, Any]] = []
        for raw in raws:
            try:
                rows.append(normalize(raw))
            except InvalidRecord as exc:
                self._record_invalid(raw, str(exc))
        return rows

    def _record_invalid(self, raw: Mapping[str, Any], reason: str) -> None:
        self.counts.skipped += 1
        record_id = _invalid_id(raw)
        if record_id is not None:
            self.invalid_ids.add(record_id)
        self.event_log.record(
            self.spec.record_invalid_event,
            aggregate_id=f"{self.spec.source}:{record_id}",
            correlation_id=self.correlation_id,
            payload={"id": record_id, "reason": reason[:REASON_MAX], "run_id": self.run_id},
        )

    def write(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        checkpoint: dict[str, Any] | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """Stage and commit a page at once (see ``stage`` and ``commit``)."""
        self.commit(self.stage(rows, checkpoint=checkpoint, also=also))

    def stage(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        checkpoint: dict[str, Any] | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> StagedPage:
        """Hash and stamp a page's rows: the CPU half of a write, done by the thread that fetches."""
        prepared = prepare_rows(self.spec, rows, self.clock())
        seen = (self.counts.fetched, self.counts.skipped)
        return StagedPage(prepared, len(rows), checkpoint, also, seen)

    def commit(self, page: StagedPage) -> None:
        """Renew the lock, then upsert, run ``also`` and save the checkpoint in one transaction.

        With a checkpoint, the run row's counts are saved in that transaction too, so progress is
        visible while the run goes on (and never ahead of what is committed). May run on a writer
        thread while the fetching thread counts the next page: this only touches the write counts.
        """
        self.lock.extend()  # a run that lost its lock writes nothing more
        marked_before = self.counts.marked_deleted
        try:
            with self.fenced() as conn:
                relax_durability(conn)
                written = upsert_prepared(conn, self.spec, page.prepared)
                if page.also is not None:
                    page.also(conn)
                if page.checkpoint is not None:
                    save_checkpoint(
                        conn, self.spec.source, full=self.full, checkpoint=page.checkpoint, now=self.clock()
                    )
                    update_run_counts(conn, self.run_id, self._progress(page, written))
        except (LockLost, SoftTimeLimitExceeded):
            # Fenced out, or cut short by the time limit: the page rolled back and is not a failure.
            self.counts.marked_deleted = marked_before
            raise
        except Exception:
            # The page rolled back (its variation deletions with it); the run fails with it.
            self.counts.marked_deleted = marked_before
            self.counts.failed += page.size
            raise
        self.counts.inserted += written.inserted
        self.counts.updated += written.updated
        self.counts.unchanged += written.unchanged
        self.committed += 1

    @contextmanager
    def fenced(self) -> Iterator[Connection]:
        """A transaction that commits only while this run still holds the source's fencing token.

        Raises:
            FencedOut: a newer run claimed the source; nothing of this transaction is committed.
        """
        with transaction(self.session_factory) as conn:
            fence.check(conn, self.spec.source, self.fence)
            yield conn

    def _progress(self, page: StagedPage, written: PageWrite) -> Counts:
        progress = self.counts.copy()
        progress.fetched, progress.skipped = page.seen
        progress.inserted += written.inserted
        progress.updated += written.updated
        progress.unchanged += written.unchanged
        return progress

    def checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Commit a checkpoint (with the run row's counts) on its own, then honour a stop request."""
        self.lock.extend()
        with self.fenced() as conn:
            save_checkpoint(conn, self.spec.source, full=self.full, checkpoint=checkpoint, now=self.clock())
            update_run_counts(conn, self.run_id, self.counts)
        self.committed += 1
        self.poll_stop()

    def poll_stop(self) -> None:
        """Stop here if the worker wants this run to end or the lock is gone; call only at a safe point.

        Raises:
            StopRequested: ``should_stop()`` is true.
            LockLost: the heartbeat found the lock expired or taken over.
        """
        self.lock.check()
        if self.should_stop():
            raise StopRequested

    def between_batches(self) -> None:
        """Keep the lock while a long comparison runs, and stop if asked (abandoning the comparison)."""
        self.lock.extend()
        self.poll_stop()

    def note_incomplete(self, event_type: str, payload: dict[str, Any]) -> None:
        """Record why part of this run's evidence was unusable; the run then ends ``partial``."""
        self.incomplete.append(str(payload.get("reason", event_type)))
        self.record_event(event_type, payload)

    def record_event(self, event_type: str, payload: dict[str, Any]) -> None:
        """An event about this run (``record`` never raises)."""
        self.event_log.record(
            event_type,
            aggregate_id=self.spec.source,
            correlation_id=self.correlation_id,
            payload={"run_id": self.run_id, **payload},
        )
