"""What the engine needs from its collaborators, as structural types (in-process fakes satisfy them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from worker.upstream.paging import OdooCursor
from worker.upstream.protocols import EventSink

__all__ = [
    "BreakerStatsSource",
    "EventSink",
    "OdooClientLike",
    "OdooPageLike",
    "WooClientLike",
    "WooPageLike",
]


class WooPageLike(Protocol):
    @property
    def records(self) -> list[dict[str, Any]]: ...

    @property
    def page(self) -> int: ...


class WooClientLike(Protocol):
    def iter_product_pages(
        self,
        *,
        modified_after: datetime | None = None,
        modified_before: datetime | None = None,
        status: str = "any",
        start_page: int = 1,
        include: Sequence[int] | None = None,
    ) -> Iterator[WooPageLike]: ...

    def iter_variation_pages(self, product_id: int, status: str = "any") -> Iterator[WooPageLike]: ...

    def variation_exists(self, product_id: int, variation_id: int) -> bool: ...

    def list_product_ids(
        self, status: str = "any", start_page: int = 1
    ) -> Iterator[tuple[int, list[Any]]]: ...

    def newest_product_ids(self, above: int | None) -> list[int]: ...

    def server_time(self) -> datetime | None: ...


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


class BreakerStatsSource(Protocol):
    """The breaker's ``stats()``; its result has ``next_attempt_at`` while the circuit is open."""

    def stats(self) -> Any: ...
