"""Full runs: find products gone from both listings, confirm each by reading it, then mark it.

A listing is evidence of deletion only when it is complete and every record in it was identified:
one record without a usable id and the comparison is skipped (the run ends ``partial``). A page-number
listing shifts when products are trashed or created while it is paged, so a live product can be
missing from it; every candidate is therefore read directly (``include=`` in ``status=any`` and
``status=trash``) and only the ones upstream no longer returns are marked deleted. The ones that
answer are stored again instead.

The reconciliation resumes in steps, so a catalog whose full run outlasts one delivery still gets its
deletions: each page of listed ids is kept in ``sync_reconcile_ids`` and committed with the
checkpoint (``step`` any -> trash, ``page``); then listed ids the mirror lacks are read and stored
(``fill``: a product that slid between two pages of a listing while the run was handed back, or was
interrupted, is caught here); then candidates are confirmed in batches in key order, each batch's
verdicts committed with ``confirmed_after``; the last step commits ``done`` with the clean-up. A
resumed run continues where the last commit left off; a product created or deleted between deliveries
only adds a candidate that the direct read settles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite

from models import ReconcileSeenId
from worker.kinds.woocommerce.normalize import normalize_product, normalize_variation
from worker.kinds.woocommerce.protocols import WooClientLike
from worker.kinds.woocommerce.variations import read_variations, usable_id
from worker.sync.context import RunContext, transaction
from worker.sync.reconcile import mark_keys_deleted, mark_orphaned_variations
from worker.sync.sources import table_of

CONFIRM_BATCH = 100  # WooCommerce's per_page maximum: one request per status per batch
SEEN = table_of(ReconcileSeenId)
LISTINGS = ("any", "trash")


class UnidentifiedRecord(Exception):
    """A listed record had no usable id: the listing cannot prove anything is gone."""


def forget_seen(conn: Connection, source: str) -> None:
    conn.execute(delete(SEEN).where(SEEN.c.source == source))


def _remember(ctx: RunContext, ids: Sequence[int]) -> Callable[[Connection], None] | None:
    if not ids:
        return None
    source = ctx.spec.source

    def insert(conn: Connection) -> None:
        # A listing that shifts while it is paged can repeat an id on two pages.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        rows = [{"source": source, "id": int(i)} for i in ids]
        conn.execute(dialect.insert(SEEN).on_conflict_do_nothing(), rows)

    return insert


def list_ids(ctx: RunContext, client: WooClientLike, cp: dict[str, Any], status: str) -> dict[str, Any]:
    """Page through one id listing from the page after the checkpoint, committing each page's ids."""
    start = int(cp.get("page") or 0) + 1 if cp.get("step") == status else 1
    cp = {**cp, "step": status, "page": start - 1}
    for number, ids in client.list_product_ids(status, start_page=start):
        if not all(usable_id(i) for i in ids):
            raise UnidentifiedRecord
        listed = int(cp.get("listed") or 0) + (len(ids) if status == "any" else 0)
        cp = {**cp, "page": number, "listed": listed}
        ctx.commit(ctx.stage([], checkpoint=cp, also=_remember(ctx, ids)))
        ctx.poll_stop()
    return cp


def next_candidates(ctx: RunContext, after: int) -> list[int]:
    """Live products (not variations) above ``after`` that neither listing named, in key order."""
    table, key = ctx.spec.table, ctx.spec.table.c[ctx.spec.key]
    listed = exists(select(SEEN.c.id).where(SEEN.c.source == ctx.spec.source, SEEN.c.id == key))
    query = (
        select(key)
        .where(
            ctx.spec.rows, table.c.parent_woo_id.is_(None), table.c.deleted_at.is_(None), key > after, ~listed
        )
        .order_by(key)
        .limit(CONFIRM_BATCH)
    )
    with transaction(ctx.session_factory) as conn:
        return [int(k) for k in conn.execute(query).scalars()]


def next_unmirrored(ctx: RunContext, after: int) -> list[int]:
    """Listed ids above ``after`` with no live row in the mirror, in key order."""
    key = ctx.spec.table.c[ctx.spec.key]
    live = exists(select(key).where(ctx.spec.rows, key == SEEN.c.id, ctx.spec.table.c.deleted_at.is_(None)))
    query = (
        select(SEEN.c.id)
        .where(SEEN.c.source == ctx.spec.source, SEEN.c.id > after, ~live)
        .order_by(SEEN.c.id)
        .limit(CONFIRM_BATCH)
    )
    with transaction(ctx.session_factory) as conn:
        return [int(k) for k in conn.execute(query).scalars()]


def read_directly(client: WooClientLike, ids: list[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for status in LISTINGS:
        for page in client.iter_product_pages(status=status, include=ids):
            found += page.records
    return found


def fill(ctx: RunContext, client: WooClientLike, cp: dict[str, Any]) -> dict[str, Any]:
    """Read and store the listed products the mirror lacks, with their variations."""
    filled = 0
    while listed := next_unmirrored(ctx, int(cp.get("filled_after") or 0)):
        cp = {**cp, "filled_after": listed[-1]}
        # A record this run already reported invalid has no row for that reason: not unmirrored.
        batch = [i for i in listed if str(i) not in ctx.invalid_ids]
        if not batch:
            continue
        rows = ctx.normalize_page(read_directly(client, batch), normalize_product)
        for row in [r for r in rows if r["type"] == "variable"]:
            status = "trash" if row.get("status") == "trash" else "any"
            listing = read_variations(client, int(row["woo_id"]), status)
            normalize = functools.partial(normalize_variation, parent_id=listing.parent_id)
            rows += ctx.normalize_page(listing.records, normalize)
        filled += len(batch)
        ctx.commit(ctx.stage(rows, checkpoint=cp))
        ctx.poll_stop()
    if filled:
        ctx.record_event("sync.reconcile_filled", {"unmirrored": filled})
    return cp


def _mark(ctx: RunContext, gone: list[int]) -> Callable[[Connection], None] | None:
    if not gone:
        return None

    def mark(conn: Connection) -> None:
        ctx.counts.marked_deleted += mark_keys_deleted(conn, ctx.spec, gone, ctx.clock())

    return mark


def confirm(ctx: RunContext, client: WooClientLike, cp: dict[str, Any]) -> dict[str, Any]:
    """Read every candidate directly; mark the ones upstream no longer returns, store the others."""
    still_there = 0
    while batch := next_candidates(ctx, int(cp.get("confirmed_after") or 0)):
        found = read_directly(client, batch)
        present = {r.get("id") for r in found}
        gone = [i for i in batch if i not in present]
        still_there += len(batch) - len(gone)
        cp = {**cp, "confirmed_after": batch[-1]}
        rows = ctx.normalize_page(found, normalize_product)
        ctx.commit(ctx.stage(rows, checkpoint=cp, also=_mark(ctx, gone)))
        ctx.poll_stop()
    if still_there:
        ctx.record_event("sync.deletion_not_confirmed", {"still_there": still_there})
    return cp


def _give_up(ctx: RunContext, cp: dict[str, Any]) -> None:
    ctx.commit(ctx.stage([], checkpoint={**cp, "step": "done"}, also=_forget(ctx)))


def _forget(ctx: RunContext) -> Callable[[Connection], None]:
    def clean_up(conn: Connection) -> None:
        forget_seen(conn, ctx.spec.source)

    return clean_up


def _finish(ctx: RunContext) -> Callable[[Connection], None]:
    def finish(conn: Connection) -> None:
        ctx.counts.marked_deleted += mark_orphaned_variations(conn, ctx.spec, ctx.clock())
        forget_seen(conn, ctx.spec.source)

    return finish


def reconcile_products(ctx: RunContext, client: WooClientLike, cp: dict[str, Any]) -> None:
    """Mark products gone upstream (and the variations of every deleted product) deleted."""
    if cp.get("step") == "done":
        return
    if cp.get("step") is None:
        # A fresh reconciliation: ids a previous, abandoned one listed prove nothing now.
        cp = {**cp, "step": "any", "page": 0, "listed": 0, "confirmed_after": 0}
        with ctx.fenced() as conn:
            forget_seen(conn, ctx.spec.source)
        ctx.checkpoint(cp)
    try:
        for status in LISTINGS[LISTINGS.index(cp["step"]) :] if cp["step"] in LISTINGS else ():
            cp = list_ids(ctx, client, cp, status)
            if status == "any" and not cp.get("listed"):
                # An empty default listing is an outage or a misconfiguration, never "all deleted";
                # the run cannot vouch for the mirror, so it ends partial.
                ctx.note_incomplete("sync.reconcile_skipped", {"reason": "upstream listed no products"})
                _give_up(ctx, cp)
                return
    except UnidentifiedRecord:
        reason = "a product in the id listing has no usable id"
        ctx.note_incomplete("sync.reconcile_skipped", {"reason": reason})
        _give_up(ctx, cp)
        return
    if cp["step"] in LISTINGS:
        cp = {**cp, "step": "fill", "page": 0}
        ctx.checkpoint(cp)
    if cp["step"] == "fill":
        cp = fill(ctx, client, cp)
        cp = {**cp, "step": "confirm"}
        ctx.checkpoint(cp)
    cp = confirm(ctx, client, cp)
    ctx.commit(ctx.stage([], checkpoint={**cp, "step": "done"}, also=_finish(ctx)))
