"""A page writer that commits on a thread of its own, one page at a time.

The thread that fetches stages page N+1 (waits for its variations, normalises, hashes) while page N
waits on PostgreSQL, instead of the two taking turns. At most one page is in flight: ``submit``
first waits for the previous commit and raises its error, and leaving the ``with`` block waits for
the last one, so whatever ends the listing (a stop, a failed fetch) leaves every submitted page
committed with its checkpoint -- or the run failing with the page that could not be.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from worker.sync.context import RunContext, StagedPage


class PageWriter:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sync-writer")
        self._pending: Future[None] | None = None

    def __enter__(self) -> PageWriter:
        return self

    def submit(self, page: StagedPage) -> None:
        self.wait()
        self._pending = self._pool.submit(self._ctx.commit, page)

    def wait(self) -> None:
        """Block until the page in flight is committed; raise what its commit raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # Also when the listing failed: the page in flight is progress worth keeping, and a
            # commit that failed is the graver error (it is raised, chained to the first).
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
