"""Full runs: find products gone from both listings, confirm each by reading it, then mark it.

A listing is evidence of deletion only when it is complete and every record in it was identified:
one record without a usable id and the comparison is skipped (the run ends ``partial``). A page-number
listing shifts when products are trashed or created while it is paged, so a live product can be
missing from it; every candidate is therefore read directly (``include=`` in ``status=any`` and
``status=trash``) and only the ones upstream no longer returns are marked deleted. The ones that
answer are stored again instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from worker.sync.context import RunContext, transaction
from worker.sync.normalize_woo import normalize_product
from worker.sync.protocols import WooClientLike
from worker.sync.reconcile import mark_keys_deleted, mark_orphaned_variations, missing_keys
from worker.sync.woo_variations import usable_id

CONFIRM_BATCH = 100  # WooCommerce's per_page maximum: one request per status per batch


class EmptyListing(Exception):
    """Upstream listed no products at all; reconciliation refuses to conclude anything from that."""


class UnidentifiedRecord(Exception):
    """A listed record had no usable id: the listing cannot prove anything is gone."""


class _Checked:
    """Passes id batches through, refusing unusable ids and counting the rest."""

    def __init__(self, batches: Iterable[Sequence[Any]]) -> None:
        self._batches = batches
        self.total = 0

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches:
            if not all(usable_id(i) for i in batch):
                raise UnidentifiedRecord
            self.total += len(batch)
            yield [int(i) for i in batch]


def _all_ids(client: WooClientLike, live: _Checked) -> Iterator[list[int]]:
    yield from live
    if live.total == 0:
        # An empty default listing is an outage or a misconfiguration, never "every product deleted".
        raise EmptyListing
    yield from _Checked(client.list_product_ids("trash"))


def confirm_gone(ctx: RunContext, client: WooClientLike, candidates: Sequence[int]) -> list[int]:
    """The candidates upstream no longer returns; the ones it does are stored again."""
    gone: list[int] = []
    for start in range(0, len(candidates), CONFIRM_BATCH):
        batch = list(candidates[start : start + CONFIRM_BATCH])
        found: list[dict[str, Any]] = []
        for status in ("any", "trash"):
            for page in client.iter_product_pages(status=status, include=batch):
                found += page.records
        present = {r.get("id") for r in found}
        gone += [i for i in batch if i not in present]
        if found:
            ctx.write(ctx.normalize_page(found, normalize_product))
        ctx.between_batches()
    return gone


def reconcile_products(ctx: RunContext, client: WooClientLike) -> None:
    """Mark products gone upstream (and the variations of every deleted product) deleted."""
    table = ctx.spec.table
    live = _Checked(client.list_product_ids("any"))
    try:
        with transaction(ctx.session_factory) as conn:
            scope = [table.c.parent_woo_id.is_(None)]
            ids = _all_ids(client, live)
            candidates = missing_keys(conn, ctx.spec, ids, scope=scope, between_batches=ctx.between_batches)
    except EmptyListing:
        candidates = None
    except UnidentifiedRecord:
        ctx.note_incomplete(
            "sync.reconcile_skipped", {"reason": "a product in the id listing has no usable id"}
        )
        return
    if candidates is None:
        ctx.record_event("sync.reconcile_skipped", {"reason": "upstream listed no products"})
        return
    gone = confirm_gone(ctx, client, candidates)
    if len(gone) < len(candidates):
        ctx.record_event("sync.deletion_not_confirmed", {"still_there": len(candidates) - len(gone)})
    with transaction(ctx.session_factory) as conn:
        now = ctx.clock()
        marked = mark_keys_deleted(conn, ctx.spec, gone, now)
        marked += mark_orphaned_variations(conn, ctx.spec, now)
    ctx.counts.marked_deleted += marked
