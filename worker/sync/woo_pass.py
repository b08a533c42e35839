"""The WooCommerce products pass: products -> trash -> (full runs) id reconciliation.

Incremental runs read the window ``[watermark - overlap, run start]`` of ``status=any`` and of
``status=trash`` (``any`` excludes trash, and trashing bumps ``date_modified``). Every variable product
met on a page has its variations re-read before that page's checkpoint is committed: variation edits
do not bump the parent, so only a full run sees all of them. The checkpoint names the phase and the
last committed page; a redelivered run resumes at the next page.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from worker.errors import FatalUpstreamError
from worker.sync.context import RunContext, transaction
from worker.sync.normalize_woo import normalize_product, normalize_variation
from worker.sync.protocols import WooClientLike, WooPageLike
from worker.sync.reconcile import mark_missing, mark_missing_variations, mark_orphaned_variations
from worker.sync.state import Bookmark
from worker.sync.writer import PageWriter

LISTING_STATUS = {"products": "any", "trash": "trash"}
FULL_PHASES = ("products", "trash", "reconcile")
INCREMENTAL_PHASES = ("products", "trash")
NOT_FOUND = 404


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def parse_iso(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


def _next_whole_second(value: dt.datetime) -> dt.datetime:
    # Upstream stamps have 1 s resolution and the bound is sent without fractions: rounding down would
    # leave an edit made in the same second just before the run to the next run.
    return value.replace(microsecond=0) + dt.timedelta(seconds=1)


def new_checkpoint(ctx: RunContext, watermark: dt.datetime | None, overlap: dt.timedelta) -> dict[str, Any]:
    """Where a fresh pass starts; the window is fixed here so a resumed pass keeps it."""
    incremental = not ctx.full and watermark is not None
    return {
        "phase": "products",
        "page": 0,
        "modified_after": iso(watermark - overlap) if incremental and watermark else None,
        "modified_before": iso(_next_whole_second(ctx.started_at)) if incremental else None,
        "pass_started_at": iso(ctx.started_at),
    }


def run_woocommerce(
    ctx: RunContext, client: WooClientLike, bookmark: Bookmark, overlap: dt.timedelta, concurrency: int = 4
) -> dt.datetime | None:
    """Run (or resume) the pass; returns the watermark a completed pass earns."""
    cp = (
        dict(bookmark.checkpoint) if bookmark.checkpoint else new_checkpoint(ctx, bookmark.watermark, overlap)
    )
    phases = FULL_PHASES if ctx.full else INCREMENTAL_PHASES
    start = phases.index(cp["phase"]) if cp["phase"] in phases else 0
    with ThreadPoolExecutor(concurrency, thread_name_prefix="woo-variations") as pool:
        for phase in phases[start:]:
            resume_after = int(cp["page"]) if phase == cp["phase"] else 0
            cp = {**cp, "phase": phase, "page": resume_after}
            if phase == "reconcile":
                ctx.checkpoint(cp)
                reconcile_products(ctx, client)
            else:
                sync_listing(ctx, client, cp, pool)
    return parse_iso(cp["pass_started_at"])


def sync_listing(ctx: RunContext, client: WooClientLike, cp: dict[str, Any], pool: Executor) -> None:
    """One listing (``status=any`` or ``trash``), page by page from the page after the checkpoint.

    A page is stored with the variations of its variable products and its checkpoint in one
    transaction. The variations of the next page are already being fetched, and that page is
    normalised and hashed, while this one is written, so the database, upstream and our CPU work at
    the same time; memory stays at three pages.
    """
    pages = client.iter_product_pages(
        modified_after=parse_iso(cp["modified_after"]),
        modified_before=parse_iso(cp["modified_before"]),
        status=LISTING_STATUS[cp["phase"]],
        start_page=int(cp["page"]) + 1,
    )
    with PageWriter(ctx) as writer:
        for page, rows, pending in _with_variations_ahead(ctx, client, pages, pool):
            listings = [future.result() for future in pending]
            for listing in listings:
                normalize = functools.partial(normalize_variation, parent_id=listing.parent_id)
                rows += ctx.normalize_page(listing.records, normalize)
            checkpoint = {**cp, "page": page.page}
            writer.submit(ctx.stage(rows, checkpoint=checkpoint, also=_variation_reconciler(ctx, listings)))
            ctx.poll_stop()


PageWork = tuple[WooPageLike, list[dict[str, Any]], list["Future[Variations]"]]


def _with_variations_ahead(
    ctx: RunContext, client: WooClientLike, pages: Iterable[WooPageLike], pool: Executor
) -> Iterator[PageWork]:
    """Yield each page (normalised) once the next page's variation fetches have been started."""
    previous: PageWork | None = None
    listing = iter(pages)
    try:
        while True:
            try:
                page = next(listing, None)
            except Exception:
                # The next page failed (breaker open, retries spent): store the page already in hand
                # first, so the checkpoint keeps all the progress that was made.
                if previous is not None:
                    done, previous = previous, None
                    yield done
                raise
            if page is None:
                break
            rows = ctx.normalize_page(page.records, normalize_product)
            parents = [int(r["woo_id"]) for r in rows if r["type"] == "variable"]
            current = (page, rows, [pool.submit(read_variations, client, pid) for pid in parents])
            if previous is not None:
                yield previous
            previous = current
        if previous is not None:
            done, previous = previous, None
            yield done
    finally:
        # Stopped early (stop requested, an error): fetches nobody will read are cancelled.
        unread: list[Future[Variations]] = previous[2] if previous is not None else []
        for future in unread:
            future.cancel()


@dataclass(frozen=True)
class Variations:
    """Every variation of one product, or ``found=False`` when the product vanished meanwhile."""

    parent_id: int
    records: list[dict[str, Any]]
    found: bool = True


def read_variations(client: WooClientLike, parent_id: int) -> Variations:
    records: list[dict[str, Any]] = []
    try:
        for page in client.iter_variation_pages(parent_id):
            records += page.records
    except FatalUpstreamError as exc:
        if exc.status_code != NOT_FOUND:
            raise
        # Deleted after it was listed; the reconciliation takes care of it.
        return Variations(parent_id, [], found=False)
    return Variations(parent_id, records)


def _variation_reconciler(ctx: RunContext, listings: list[Variations]) -> Callable[[Connection], None] | None:
    """On full runs, mark each parent's local variations missing from its complete listing."""
    if not ctx.full:
        return None

    def reconcile(conn: Connection) -> None:
        for listing in listings:
            # Invalid variations still exist upstream: their ids count as seen.
            seen = [r["id"] for r in listing.records if isinstance(r.get("id"), int)]
            if listing.found and seen:
                now = ctx.clock()
                ctx.counts.marked_deleted += mark_missing_variations(
                    conn, ctx.spec, listing.parent_id, seen, now
                )

    return reconcile


class _Counted:
    """Passes id batches through, remembering how many ids came by."""

    def __init__(self, batches: Iterable[list[int]]) -> None:
        self._batches = batches
        self.total = 0

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches:
            self.total += len(batch)
            yield batch


def _all_ids(client: WooClientLike, live: _Counted) -> Iterator[list[int]]:
    yield from live
    if live.total == 0:
        # An empty default listing is an outage or a misconfiguration, never "every product deleted".
        raise EmptyListing
    yield from client.list_product_ids("trash")


class EmptyListing(Exception):
    """Upstream listed no products at all; reconciliation refuses to conclude anything from that."""


def reconcile_products(ctx: RunContext, client: WooClientLike) -> None:
    """Mark products gone from both listings (and their variations) deleted, all in one transaction."""
    table = ctx.spec.table
    live = _Counted(client.list_product_ids("any"))
    try:
        with transaction(ctx.session_factory) as conn:
            scope = [table.c.parent_woo_id.is_(None)]
            now = ctx.clock()
            marked = mark_missing(conn, ctx.spec, _all_ids(client, live), now, scope=scope,
                                  between_batches=ctx.between_batches)  # fmt: skip
            if marked is not None:
                marked += mark_orphaned_variations(conn, ctx.spec, now)
    except EmptyListing:
        marked = None
    if marked is None:
        ctx.record_event("sync.reconcile_skipped", {"reason": "upstream listed no products"})
        return
    ctx.counts.marked_deleted += marked
