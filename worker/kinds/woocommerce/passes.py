"""The WooCommerce products pass: new ids -> products -> trash -> (full runs) id reconciliation.

Every pass starts with one cheap request for the newest product ids: its ``Date`` header is the
upstream's clock, which fixes the pass's watermark (never the worker's clock, which may be hours
off), and on incremental runs any id above the newest one mirrored is read directly -- a product
imported with a backdated ``date_created`` has an old ``date_modified`` that no window shows, but
always a new, higher id. Incremental runs then read ``status=any`` and ``status=trash`` modified
after ``watermark - overlap``, with no upper bound: ordered by id, a product edited while the
listing is paged keeps its place instead of leaving the window and shifting the pages after it.

Variations follow their parent on every run: each variable product met on a page has its variations
re-read (a trashed parent's with ``status=trash``), and that complete listing reconciles the parent's
local variations; a product that is no longer variable has none. A local variation is marked deleted
only after upstream answered 404 for it. The checkpoint names the phase and the last committed page;
a redelivered run resumes at the next page.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, func, select

from worker.kinds.woocommerce.normalize import normalize_product, normalize_variation
from worker.kinds.woocommerce.protocols import WooClientLike, WooPageLike
from worker.kinds.woocommerce.reconcile import reconcile_products
from worker.kinds.woocommerce.variations import Variations, gone_variations, read_variations
from worker.sync.context import RunContext, transaction
from worker.sync.reconcile import mark_keys_deleted
from worker.sync.state import Bookmark
from worker.sync.writer import PageWriter

LISTING_STATUS = {"new": "any", "products": "any", "trash": "trash"}
FULL_PHASES = ("products", "trash", "reconcile")
INCREMENTAL_PHASES = ("new", "products", "trash")


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


def parse_iso(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


def newest_local_id(ctx: RunContext) -> int:
    """The highest upstream id ever mirrored (products and variations share WordPress's id sequence)."""
    key = ctx.spec.table.c[ctx.spec.key]
    with transaction(ctx.session_factory) as conn:
        return int(conn.execute(select(func.max(key)).where(ctx.spec.rows)).scalar_one() or 0)


def new_checkpoint(
    ctx: RunContext, client: WooClientLike, watermark: dt.datetime | None, overlap: dt.timedelta
) -> dict[str, Any]:
    """Where a fresh pass starts; the window and the new ids are fixed here so a resumed pass keeps them."""
    incremental = not ctx.full and watermark is not None
    new_ids = client.newest_product_ids(newest_local_id(ctx) if incremental else None)
    # Without a Date header (a proxy that strips it), the worker's clock is all there is.
    upstream_now = client.server_time() or ctx.started_at
    return {
        "phase": "new" if incremental else "products",
        "page": 0,
        "modified_after": iso(watermark - overlap) if incremental and watermark else None,
        "include": sorted(new_ids),
        "pass_started_at": iso(upstream_now),
        "shifted": False,
        "serves_through": ctx.serves_through,
    }


def run_woocommerce(
    ctx: RunContext, client: WooClientLike, bookmark: Bookmark, overlap: dt.timedelta, concurrency: int = 4
) -> dt.datetime | None:
    """Run (or resume) the pass; returns the watermark a completed pass earns.

    That is the upstream's time when the pass started -- or, when a listing shifted under the pass
    (products trashed or created between its pages), the previous watermark: a product that slid onto
    a page already read is then inside the next incremental run's window.
    """
    cp = (
        dict(bookmark.checkpoint)
        if bookmark.checkpoint
        else new_checkpoint(ctx, client, bookmark.watermark, overlap)
    )
    phases = FULL_PHASES if ctx.full else INCREMENTAL_PHASES
    start = phases.index(cp["phase"]) if cp["phase"] in phases else 0
    with ThreadPoolExecutor(concurrency, thread_name_prefix="woo-variations") as pool:
        for phase in phases[start:]:
            resume_after = int(cp["page"]) if phase == cp["phase"] else 0
            cp = {**cp, "phase": phase, "page": resume_after}
            if phase == "reconcile":
                reconcile_products(ctx, client, cp)
            elif phase == "new" and not cp.get("include"):
                continue
            else:
                cp = sync_listing(ctx, client, cp, pool)
    if cp.get("shifted"):
        return bookmark.watermark
    return parse_iso(cp["pass_started_at"])


def _listing(client: WooClientLike, cp: dict[str, Any]) -> Iterable[WooPageLike]:
    phase = cp["phase"]
    if phase == "new":
        return client.iter_product_pages(status="any", start_page=int(cp["page"]) + 1, include=cp["include"])
    return client.iter_product_pages(
        modified_after=parse_iso(cp.get("modified_after")),
        status=LISTING_STATUS[phase],
        start_page=int(cp["page"]) + 1,
    )


def sync_listing(
    ctx: RunContext, client: WooClientLike, cp: dict[str, Any], pool: Executor
) -> dict[str, Any]:
    """One listing, page by page from the page after the checkpoint; returns the last checkpoint.

    A page is stored with the variations of its variable products, the deletion of variations
    upstream no longer has, and its checkpoint in one transaction. The variations of the next page
    are already being fetched, and that page is normalised and hashed, while this one is written, so
    the database, upstream and our CPU work at the same time; memory stays at three pages.
    """
    variation_status = "trash" if cp["phase"] == "trash" else "any"
    largest_total: int | None = None
    with PageWriter(ctx) as writer:
        for page, rows, pending in _with_variations_ahead(
            ctx, client, _listing(client, cp), pool, variation_status
        ):
            listings = [future.result() for future in pending]
            for listing in listings:
                normalize = functools.partial(normalize_variation, parent_id=listing.parent_id)
                rows += ctx.normalize_page(listing.records, normalize)
            gone = gone_variations(ctx, client, rows, listings)
            total = getattr(page, "total", None)
            if isinstance(total, int):
                # Only a listing that lost records can slide one onto a page already read; one that
                # gained records (new ids come last) only repeats a record.
                if largest_total is not None and total < largest_total and not cp.get("shifted"):
                    shift = {"phase": cp["phase"], "page": page.page, "total": total, "was": largest_total}
                    ctx.record_event("sync.listing_shifted", shift)
                    cp = {**cp, "shifted": True}
                largest_total = max(total, largest_total or 0)
            cp = {**cp, "page": page.page}
            writer.submit(ctx.stage(rows, checkpoint=cp, also=_marker(ctx, gone)))
            ctx.poll_stop()
    return cp


def _marker(ctx: RunContext, gone: list[int]) -> Callable[[Connection], None] | None:
    if not gone:
        return None

    def mark(conn: Connection) -> None:
        ctx.counts.marked_deleted += mark_keys_deleted(conn, ctx.spec, gone, ctx.clock())

    return mark


PageWork = tuple[WooPageLike, list[dict[str, Any]], list["Future[Variations]"]]


def _with_variations_ahead(
    ctx: RunContext, client: WooClientLike, pages: Iterable[WooPageLike], pool: Executor, status: str
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
            current = (page, rows, [pool.submit(read_variations, client, pid, status) for pid in parents])
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
