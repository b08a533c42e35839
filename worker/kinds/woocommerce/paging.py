"""WooCommerce pages by number, driven by ``X-WP-TotalPages``."""

from __future__ import annotations

from dataclasses import dataclass


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
