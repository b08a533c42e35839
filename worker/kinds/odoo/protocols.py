"""What the Odoo passes need from a client, as structural types (in-process fakes satisfy them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from worker.kinds.odoo.paging import OdooCursor


class OdooPageLike(Protocol):
    @property
    def records(self) -> list[dict[str, Any]]: ...

    @property
    def next_cursor(self) -> OdooCursor: ...


class OdooClientLike(Protocol):
    def server_time(self, *, refresh: bool = False) -> datetime | None: ...

    def search_supplier_ids(self) -> list[int]: ...

    def search_supplier_ranks(self) -> dict[int, int]: ...

    def iter_supplier_pages(
        self,
        *,
        after_id: int = 0,
        since: datetime | None = None,
        page_size: int | None = None,
        cursor: OdooCursor | None = None,
    ) -> Iterator[OdooPageLike]: ...

    def read_suppliers(self, ids: Sequence[int]) -> list[dict[str, Any]]: ...
