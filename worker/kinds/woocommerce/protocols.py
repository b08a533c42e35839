"""What the WooCommerce passes need from a client, as structural types (in-process fakes satisfy them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol


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
