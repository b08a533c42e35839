"""The Odoo suppliers pass: id pages (inside a ``write_date`` filter when incremental) -> id reconciliation.

Incremental runs read rows written since the watermark minus the client's overlap margin, paging by id
with that date fixed for the whole pass. The watermark is the upstream's clock when the pass started
(its ``Date`` header), not the newest ``write_date`` seen: returned stamps are truncated to the
second, and a row written mid-pass below the id already passed must fall inside the next window.
Raising ``supplier_rank`` does not touch ``write_date``, so every run also compares upstream's
supplier id set with the local one and reads the ids it does not know. A full run then marks local
suppliers missing from that set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import select

from worker.kinds.odoo.normalize import normalize_supplier
from worker.kinds.odoo.paging import OdooCursor
from worker.kinds.odoo.protocols import OdooClientLike
from worker.kinds.woocommerce.passes import iso, parse_iso
from worker.sync.context import RunContext, transaction
from worker.sync.reconcile import mark_missing
from worker.sync.state import Bookmark

ID_CHUNK = 1000


def chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def dump_cursor(cursor: OdooCursor) -> dict[str, Any]:
    return {"after_id": cursor.after_id, "since": iso(cursor.since)}


def load_cursor(value: Any) -> OdooCursor | None:
    if not isinstance(value, dict):
        return None
    after_id = int(value.get("after_id") or 0)
    if "since" not in value and value.get("write_date"):
        # An old (write_date, id) keyset position: every row it had not passed was written at or
        # after that stamp, but rows written later may have any id, so restart the ids from 0.
        return OdooCursor(after_id=0, since=parse_iso(value["write_date"]))
    return OdooCursor(after_id=after_id, since=parse_iso(value.get("since")))


def new_checkpoint(ctx: RunContext, client: OdooClientLike, watermark: dt.datetime | None) -> dict[str, Any]:
    return {
        "phase": "suppliers",
        "cursor": None,
        "since": None if ctx.full else iso(watermark),
        "max_write_date": iso(watermark),
        # Asked before the first page, so every row written after this point is in the next window.
        "upstream_started_at": iso(client.server_time(refresh=True)),
        "serves_through": ctx.serves_through,
    }


def run_odoo(ctx: RunContext, client: OdooClientLike, bookmark: Bookmark) -> dt.datetime | None:
    """Run (or resume) the pass; returns the upstream's clock at the pass start as the next watermark.

    Without a ``Date`` header from the upstream, falls back to the newest ``write_date`` mirrored.
    """
    cp = dict(bookmark.checkpoint) if bookmark.checkpoint else new_checkpoint(ctx, client, bookmark.watermark)
    if cp["phase"] == "suppliers":
        cp = sync_pages(ctx, client, cp)
        cp = {**cp, "phase": "ids"}
        ctx.checkpoint(cp)
    sync_id_set(ctx, client)
    return parse_iso(cp.get("upstream_started_at")) or parse_iso(cp["max_write_date"])


def sync_pages(ctx: RunContext, client: OdooClientLike, cp: dict[str, Any]) -> dict[str, Any]:
    pages = client.iter_supplier_pages(since=parse_iso(cp["since"]), cursor=load_cursor(cp["cursor"]))
    newest = parse_iso(cp["max_write_date"])
    for page in pages:
        rows = ctx.normalize_page(page.records, normalize_supplier)
        stamps = [r["odoo_write_date"] for r in rows if r["odoo_write_date"] is not None]
        newest = max([*stamps, *([newest] if newest else [])], default=None)
        cp = {**cp, "cursor": dump_cursor(page.next_cursor), "max_write_date": iso(newest)}
        ctx.write(rows, checkpoint=cp)
        ctx.poll_stop()
    return cp


def drifted_ids(ctx: RunContext, ranks: dict[int, int]) -> list[int]:
    """Supplier ids whose local row is missing, marked deleted, or holds another ``supplier_rank``.

    Odoo raises ``supplier_rank`` with raw SQL that leaves ``write_date`` alone, so neither a new
    supplier nor a rank change on a known one (a rank lowered to 0 by a write and raised again by a
    vendor bill) shows up in a ``write_date`` window.
    """
    table, key = ctx.spec.table, ctx.spec.table.c[ctx.spec.key]
    drifted: list[int] = []
    for chunk in chunks(sorted(ranks), ID_CHUNK):
        with transaction(ctx.session_factory) as conn:
            live = (ctx.spec.rows, table.c.deleted_at.is_(None))
            query = select(key, table.c.supplier_rank).where(key.in_(chunk), *live)
            known = {int(k): rank for k, rank in conn.execute(query)}
        drifted += [i for i in chunk if known.get(i) != ranks[i]]
    return drifted


def sync_id_set(ctx: RunContext, client: OdooClientLike) -> None:
    """Fetch suppliers only the id set reveals; on full runs mark the ones no longer in it."""
    ranks = client.search_supplier_ranks()
    if not ranks:
        # Nothing proves a deletion; a full run that could not reconcile cannot vouch for the mirror.
        payload = {"reason": "upstream listed no suppliers"}
        if ctx.full:
            ctx.note_incomplete("sync.reconcile_skipped", payload)
        else:
            ctx.record_event("sync.reconcile_skipped", payload)
        return
    drifted = drifted_ids(ctx, ranks)
    for chunk in chunks(drifted, ID_CHUNK):
        ctx.write(ctx.normalize_page(client.read_suppliers(chunk), normalize_supplier))
        ctx.poll_stop()
    if drifted:
        ctx.record_event("sync.drift_detected", {"new_ids": len(drifted), "sample": drifted[:20]})
    if ctx.full:
        with ctx.fenced() as conn:
            marked = mark_missing(conn, ctx.spec, chunks(sorted(ranks), ID_CHUNK), ctx.clock(),
                                  between_batches=ctx.between_batches)  # fmt: skip
        ctx.counts.marked_deleted += marked or 0
