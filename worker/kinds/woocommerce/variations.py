"""Variations follow their parent: read with it, and reconciled against its complete listing.

A variable product's variations listing is complete evidence for that parent only when every record
in it carries a usable id; a product that is not variable (any more) has no variations -- WooCommerce
deletes them when a product turns simple. A local variation missing from that evidence is read
directly and marked deleted only when upstream answers 404 for it: a listing read while the parent
was being edited is never enough to tombstone a live row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from worker.infra.errors import FatalUpstreamError
from worker.kinds.woocommerce.protocols import WooClientLike
from worker.sync.context import RunContext, transaction

NOT_FOUND = 404


@dataclass(frozen=True)
class Variations:
    """Every variation of one product, or ``found=False`` when the product vanished meanwhile."""

    parent_id: int
    records: list[dict[str, Any]]
    found: bool = True


def read_variations(client: WooClientLike, parent_id: int, status: str = "any") -> Variations:
    records: list[dict[str, Any]] = []
    try:
        for page in client.iter_variation_pages(parent_id, status):
            records += page.records
    except FatalUpstreamError as exc:
        if exc.status_code != NOT_FOUND:
            raise
        # Deleted after it was listed; the reconciliation takes care of it.
        return Variations(parent_id, [], found=False)
    return Variations(parent_id, records)


def usable_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _evidence(
    ctx: RunContext, rows: Sequence[dict[str, Any]], listings: Sequence[Variations]
) -> dict[int, set[int]]:
    """For each product on the page whose variations are known completely: the ids upstream lists."""
    by_parent = {listing.parent_id: listing for listing in listings}
    evidence: dict[int, set[int]] = {}
    for row in rows:
        if row.get("parent_woo_id") is not None:
            continue
        pid = int(row["woo_id"])
        if row["type"] != "variable":
            evidence[pid] = set()
            continue
        listing = by_parent.get(pid)
        if listing is None or not listing.found:
            continue
        ids: list[Any] = [r.get("id") for r in listing.records]
        if not all(usable_id(i) for i in ids):
            ctx.note_incomplete(
                "sync.reconcile_skipped",
                {"reason": "a variation in the listing has no usable id", "parent_id": pid},
            )
            continue
        evidence[pid] = {int(i) for i in ids}
    return evidence


def gone_variations(
    ctx: RunContext, client: WooClientLike, rows: Sequence[dict[str, Any]], listings: Sequence[Variations]
) -> list[int]:
    """Local live variations of this page's products that upstream confirms are gone (404)."""
    evidence = _evidence(ctx, rows, listings)
    if not evidence:
        return []
    table = ctx.spec.table
    query = select(table.c.woo_id, table.c.parent_woo_id).where(
        ctx.spec.rows, table.c.parent_woo_id.in_(list(evidence)), table.c.deleted_at.is_(None)
    )
    with transaction(ctx.session_factory) as conn:
        local = conn.execute(query).all()
    candidates = [(int(p), int(v)) for v, p in local if int(v) not in evidence[int(p)]]
    return [vid for pid, vid in candidates if not client.variation_exists(pid, vid)]
