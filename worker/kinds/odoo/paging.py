"""Odoo pages by id (inside a date filter when incremental) -- never by offset, which skips and repeats
rows when the set changes between pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.infra.errors import FatalUpstreamError
from worker.kinds.odoo.values import format_odoo_datetime


@dataclass(frozen=True)
class OdooCursor:
    """Where an Odoo pass resumes: after ``after_id``, among rows written since ``since`` if incremental.

    Pages go by id inside a fixed date filter, never by ``(write_date, id)``: Odoo returns
    ``write_date`` truncated to the second while filtering on its stored microseconds, so a keyset
    built from returned stamps cannot leave a second that holds a page of rows (one mass ``write``).
    """

    after_id: int = 0
    since: datetime | None = None

    @classmethod
    def starting(cls, since: datetime | None, overlap: timedelta, after_id: int = 0) -> OdooCursor:
        """The first cursor of a pass; an incremental one re-reads ``overlap`` before ``since``.

        ``write_date`` is the transaction start, so rows committed late carry an older stamp.
        """
        if since is None:
            return cls(after_id=after_id)
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        return cls(after_id=after_id, since=(aware - overlap).astimezone(UTC))

    @property
    def incremental(self) -> bool:
        return self.since is not None

    def domain(self) -> list[Any]:
        """The rows still to read: ids after this cursor, written at or after ``since``."""
        if self.since is None:
            return [("id", ">", self.after_id)]
        # The string drops microseconds, so '>=' keeps every row of since's second.
        return [("write_date", ">=", format_odoo_datetime(self.since)), ("id", ">", self.after_id)]

    def order(self) -> str:
        return "id asc"

    def advance(self, records: Sequence[dict[str, Any]]) -> OdooCursor:
        """The cursor after the last record of a page; refuses to go backwards or stand still.

        Raises:
            FatalUpstreamError: the server ignored the cursor (same or earlier id again).
        """
        if not records:
            return self
        nxt = OdooCursor(after_id=int(records[-1]["id"]), since=self.since)
        if nxt.after_id <= self.after_id:
            msg = f"Odoo paging did not advance past {self} (got {nxt}); refusing to loop"
            raise FatalUpstreamError(msg, upstream="odoo", operation="fetch_suppliers")
        return nxt
