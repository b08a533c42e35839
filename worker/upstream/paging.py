"""Paginators: the loop state of each upstream's paging, with loop detection.

WooCommerce pages by number, driven by ``X-WP-TotalPages``. Odoo pages by keyset -- never by offset,
which skips and repeats rows when the set changes between pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.errors import FatalUpstreamError
from worker.upstream.odoo_values import format_odoo_datetime, parse_odoo_datetime


@dataclass(frozen=True)
class OdooCursor:
    """Where an Odoo pass resumes: after ``(write_date, id)`` when incremental, after ``id`` if not."""

    after_id: int = 0
    write_date: datetime | None = None

    @classmethod
    def starting(cls, since: datetime | None, overlap: timedelta, after_id: int = 0) -> OdooCursor:
        """The first cursor of a pass; an incremental one re-reads ``overlap`` before ``since``.

        ``write_date`` is the transaction start, so rows committed late carry an older stamp.
        """
        if since is None:
            return cls(after_id=after_id)
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        return cls(after_id=after_id, write_date=(aware - overlap).astimezone(UTC))

    @property
    def incremental(self) -> bool:
        return self.write_date is not None

    def domain(self) -> list[Any]:
        """The keyset condition selecting rows strictly after this cursor."""
        if self.write_date is None:
            return [("id", ">", self.after_id)]
        w = format_odoo_datetime(self.write_date)
        return ["|", ("write_date", ">", w), "&", ("write_date", "=", w), ("id", ">", self.after_id)]

    def order(self) -> str:
        return "write_date asc, id asc" if self.incremental else "id asc"

    def advance(self, records: Sequence[dict[str, Any]]) -> OdooCursor:
        """The cursor after the last record of a page; refuses to go backwards or stand still.

        Raises:
            FatalUpstreamError: the server ignored the cursor (same or earlier position again).
        """
        if not records:
            return self
        last = records[-1]
        written = parse_odoo_datetime(last.get("write_date")) if self.incremental else None
        if self.incremental and written is None:
            msg = f"Odoo record {last.get('id')} has no write_date; cannot page incrementally"
            raise FatalUpstreamError(msg, upstream="odoo", operation="fetch_suppliers")
        nxt = OdooCursor(after_id=int(last["id"]), write_date=written)
        if nxt.key() <= self.key():
            msg = f"Odoo paging did not advance past {self} (got {nxt}); refusing to loop"
            raise FatalUpstreamError(msg, upstream="odoo", operation="fetch_suppliers")
        return nxt

    def key(self) -> tuple[datetime, int]:
        return (self.write_date or datetime.min.replace(tzinfo=UTC), self.after_id)


@dataclass
class PageNumbers:
    """WooCommerce page numbers to fetch, bounded by the latest ``X-WP-TotalPages`` seen.

    ``total_pages`` is None until a response said it (some proxies strip the header); then the
    caller pages one at a time until a short page.
    """

    next_page: int = 1
    total_pages: int | None = None
    exhausted: bool = False

    def known_remaining(self) -> bool:
        """True when another page is known to exist and can be fetched ahead."""
        return not self.exhausted and self.total_pages is not None and self.next_page <= self.total_pages

    def unknown_remaining(self) -> bool:
        """True when no total is known yet and the data has not visibly ended."""
        return not self.exhausted and self.total_pages is None

    def take(self) -> int:
        page = self.next_page
        self.next_page += 1
        return page

    def observe(self, page: int, count: int, per_page: int, total_pages: int | None) -> None:
        """Learn from a page just yielded: a new total, or (without one) the end of the data."""
        if total_pages is not None:
            self.total_pages = total_pages
        elif count < per_page:
            self.exhausted = True
