"""A deterministic WooCommerce catalog: a compact index plus overrides, rendered per request.

Products and variations share one id space (both are WordPress posts), so product ids have gaps.
The index holds only what queries filter and sort on (type, status, dates); every other field is
rendered from (seed, id) by ``woo_render`` and then overlaid with the fields a test changed.
"""

from __future__ import annotations

import calendar
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.sandbox import woo_render
from worker.sandbox.woo_render import SITE_OFFSET

# Generated history ends here; anything a test changes is stamped with the (later) real clock.
ANCHOR = calendar.timegm((2025, 6, 1, 12, 0, 0))
HISTORY_SECONDS = 2 * 365 * 86400
TYPES = (("simple", 0.76), ("variable", 0.15), ("grouped", 0.03), ("external", 0.03))
STATUSES = (("publish", 0.84), ("draft", 0.04), ("private", 0.03), ("pending", 0.02))
ALL_STATUSES = ("publish", "draft", "pending", "private", "future", "trash")
INDEXED = ("id", "type", "status", "variations", "date_created", "date_created_gmt")


@dataclass(slots=True)
class _Post:
    id: int
    type: str
    status: str
    created: int
    modified: int
    parent_id: int = 0
    variations: list[int] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...], rest: str) -> str:
    roll = rng.random()
    for value, share in table:
        if roll < share:
            return value
        roll -= share
    return rest


class WooCatalog:
    """Products and variations of one shop; thread-safe, mutated by tests while the server runs."""

    def __init__(
        self,
        seed: int = 1,
        size: int = 1000,
        *,
        clock: Callable[[], datetime] | None = None,
        site_url: str = "http://127.0.0.1",
    ) -> None:
        self.seed = seed
        self.site_url = site_url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._products: dict[int, _Post] = {}
        self._variations: dict[int, _Post] = {}
        self._cache: dict[tuple[Any, ...], list[int]] = {}
        self._next_id = 10
        self._generate(size)

    def _generate(self, size: int) -> None:
        rng = random.Random(self.seed)
        start = ANCHOR - HISTORY_SECONDS
        for i in range(size):
            self._next_id += rng.randint(1, 3) if rng.random() < 0.1 else 0
            ptype = _pick(rng, TYPES, "subscription")
            status = _pick(rng, STATUSES, "trash")
            created = start + (HISTORY_SECONDS * i) // max(size, 1) + rng.randrange(3600)
            modified = created + (rng.randrange(max(1, ANCHOR - created)) if rng.random() < 0.4 else 0)
            post = self._add_product(ptype, status, created, modified)
            for _ in range(rng.randint(2, 5) if ptype == "variable" else 0):
                vmod = created + (rng.randrange(max(1, ANCHOR - created)) if rng.random() < 0.3 else 0)
                self._add_variation(post, "private" if rng.random() < 0.05 else "publish", vmod)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _add_product(self, ptype: str, status: str, created: int, modified: int) -> _Post:
        post = _Post(self._new_id(), ptype, status, created, modified)
        self._products[post.id] = post
        return post

    def _add_variation(self, parent: _Post, status: str, modified: int) -> _Post:
        variation = _Post(self._new_id(), "variation", status, parent.created, modified, parent.id)
        self._variations[variation.id] = variation
        parent.variations.append(variation.id)
        return variation

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def _changed(self) -> None:
        self._cache.clear()

    # Reading -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._products)

    def get(self, record_id: int) -> dict[str, Any]:
        """A product or a variation as the API renders it; ``KeyError`` if it does not exist."""
        with self._lock:
            if record_id in self._products:
                return self._render(self._products[record_id])
            variation = self._variations[record_id]
            return self._render_variation(variation, self._render(self._products[variation.parent_id]))

    def has_product(self, product_id: int) -> bool:
        with self._lock:
            return product_id in self._products

    def query_products(
        self,
        *,
        statuses: frozenset[str],
        modified_after: int | None = None,
        modified_before: int | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        include: tuple[int, ...] | None = None,
        orderby: str = "date",
        descending: bool = True,
    ) -> list[int]:
        """Ids matching the filters, sorted; cached until the next mutation so paging is cheap."""
        key = (statuses, modified_after, modified_before, created_after, created_before, include,
               orderby, descending)  # fmt: skip
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                posts = self._filter(self._products.values(), key)
                cached = [p.id for p in self._ordered(posts, orderby, descending, include)]
                if len(self._cache) > 64:
                    self._cache.clear()
                self._cache[key] = cached
            return cached

    def query_variations(
        self, product_id: int, *, statuses: frozenset[str], orderby: str, descending: bool,
        modified_after: int | None = None, modified_before: int | None = None,
        include: tuple[int, ...] | None = None,
    ) -> list[int]:  # fmt: skip
        with self._lock:
            parent = self._products[product_id]
            posts = [self._variations[v] for v in parent.variations]
            key = (statuses, modified_after, modified_before, None, None, include)
            rows = self._filter(posts, key)
            return [p.id for p in self._ordered(rows, orderby, descending, include)]

    def _ordered(
        self, posts: list[_Post], orderby: str, descending: bool, include: tuple[int, ...] | None
    ) -> list[_Post]:
        if orderby == "include" and include is not None:
            position = {pid: i for i, pid in enumerate(include)}
            return sorted(posts, key=lambda p: position[p.id])
        if orderby in ("title", "slug"):
            # Names are rendered, not indexed; a query result is cached, so this runs once.
            return sorted(posts, key=lambda p: (self._title(p, orderby), p.id), reverse=descending)
        if orderby == "id":
            return sorted(posts, key=lambda p: p.id, reverse=descending)
        if orderby == "modified":
            return sorted(posts, key=lambda p: (p.modified, p.id), reverse=descending)
        return sorted(posts, key=lambda p: (p.created, p.id), reverse=descending)

    def _title(self, post: _Post, orderby: str) -> str:
        if post.parent_id:
            return ""
        name = str(post.overrides.get("name") or woo_render.product_name(self.seed, post.id))
        return woo_render.slugify(name) if orderby == "slug" else name.lower()

    @staticmethod
    def _filter(posts: Any, key: tuple[Any, ...]) -> list[_Post]:
        statuses, m_after, m_before, c_after, c_before, include = key[:6]
        wanted = set(include) if include is not None else None
        return [
            p
            for p in posts
            if p.status in statuses
            and (m_after is None or p.modified > m_after)
            and (m_before is None or p.modified < m_before)
            and (c_after is None or p.created > c_after)
            and (c_before is None or p.created < c_before)
            and (wanted is None or p.id in wanted)
        ]

    def render_products(self, ids: list[int]) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render(self._products[i]) for i in ids if i in self._products]

    def render_variations(self, product_id: int, ids: list[int]) -> list[dict[str, Any]]:
        with self._lock:
            parent = self._render(self._products[product_id])
            return [self._render_variation(self._variations[i], parent) for i in ids]

    def iter_products(self, *, include_trash: bool = True) -> Iterator[dict[str, Any]]:
        """Every current product, rendered (trashed ones too unless asked otherwise)."""
        with self._lock:
            posts = list(self._products.values())
        for post in posts:
            if include_trash or post.status != "trash":
                with self._lock:
                    row = self._render(post)
                yield row

    def iter_variations(self) -> Iterator[dict[str, Any]]:
        """Every current variation of every current product."""
        with self._lock:
            variations = list(self._variations.values())
        for variation in variations:
            yield self.get(variation.id)

    def expected_rows(self) -> Iterator[dict[str, Any]]:
        """What a perfect mirror holds: every product (trashed included), then every variation."""
        yield from self.iter_products()
        yield from self.iter_variations()

    def _render(self, post: _Post) -> dict[str, Any]:
        body = woo_render.product_body(
            self.seed, post.id, post.type, post.variations, post.created, self.site_url
        )
        body.update(woo_render.dates(post.created, post.modified, SITE_OFFSET))
        body["status"] = post.status
        return _overlay(body, post.overrides)

    def _render_variation(self, post: _Post, parent: dict[str, Any]) -> dict[str, Any]:
        body = woo_render.variation_body(self.seed, post.id, parent, post.created, self.site_url)
        body.update(woo_render.dates(post.created, post.modified, SITE_OFFSET))
        body["status"] = post.status
        return _overlay(body, post.overrides)

    # Mutations ---------------------------------------------------------------------------------

    def create_product(self, *, variation_count: int | None = None, **fields: Any) -> dict[str, Any]:
        """A new product stamped now; a variable product gets ``variation_count`` (default 2) variations."""
        with self._lock:
            now = self._now()
            post = self._add_product("simple", "publish", now, now)
            try:
                self._apply(post, fields)
            except ValueError:
                del self._products[post.id]
                raise
            default = 2 if post.type == "variable" else 0
            for _ in range(default if variation_count is None else variation_count):
                self._add_variation(post, "publish", now)
            self._changed()
            return self._render(post)

    def create_variation(self, product_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            parent = self._products[product_id]
            variation = self._add_variation(parent, str(fields.pop("status", "publish")), self._now())
            variation.created = variation.modified
            variation.overrides.update(_without_indexed(fields))
            self._changed()
            return self.get(variation.id)

    def change(self, product_id: int, **fields: Any) -> dict[str, Any]:
        """Edit a product as the admin screen does: the fields change and ``date_modified`` moves."""
        with self._lock:
            post = self._products[product_id]
            self._apply(post, fields)
            post.modified = self._now()
            self._changed()
            return self._render(post)

    def change_variation(self, product_id: int, variation_id: int, **fields: Any) -> dict[str, Any]:
        """Edit one variation; only the variation's date moves, never the parent's."""
        with self._lock:
            variation = self._variation_of(product_id, variation_id)
            self._apply(variation, fields)
            variation.modified = self._now()
            self._changed()
            return self.get(variation_id)

    def change_stock(self, record_id: int, quantity: int) -> dict[str, Any]:
        """Stock moved by an order: WooCommerce does NOT bump ``date_modified`` for this."""
        with self._lock:
            post = self._products.get(record_id) or self._variations[record_id]
            post.overrides.update(
                manage_stock=True,
                stock_quantity=quantity,
                stock_status=woo_render.stock_status(quantity),
            )
            self._changed()
            return self.get(record_id)

    def trash(self, product_id: int) -> dict[str, Any]:
        """Move to the bin (status ``trash``); trashing is an update, so the date moves."""
        return self.change(product_id, status="trash")

    def delete(self, product_id: int) -> None:
        """Force delete: the product and its variations are gone, no tombstone."""
        with self._lock:
            post = self._products.pop(product_id)
            for variation_id in post.variations:
                self._variations.pop(variation_id, None)
            self._changed()

    def delete_variation(self, product_id: int, variation_id: int) -> None:
        with self._lock:
            self._variation_of(product_id, variation_id)
            self._products[product_id].variations.remove(variation_id)
            del self._variations[variation_id]
            self._changed()

    def bump(self, record_id: int, at: datetime | None = None) -> dict[str, Any]:
        """Touch ``date_modified`` only (to now, or to ``at``, a UTC datetime)."""
        with self._lock:
            post = self._products.get(record_id) or self._variations[record_id]
            post.modified = int(at.timestamp()) if at is not None else self._now()
            self._changed()
            return self.get(record_id)

    def _variation_of(self, product_id: int, variation_id: int) -> _Post:
        variation = self._variations[variation_id]
        if variation.parent_id != product_id:
            raise KeyError(variation_id)
        return variation

    def _apply(self, post: _Post, fields: dict[str, Any]) -> None:
        if "status" in fields:
            status = str(fields.pop("status"))
            if status not in ALL_STATUSES:
                msg = f"unknown status {status!r}"
                raise ValueError(msg)
            post.status = status
        if "type" in fields and post.parent_id == 0:
            post.type = str(fields.pop("type"))
        post.overrides.update(_without_indexed(fields))


def _without_indexed(fields: dict[str, Any]) -> dict[str, Any]:
    bad = [k for k in fields if k in INDEXED or k.startswith("date_modified")]
    if bad:
        msg = f"{', '.join(bad)} cannot be overridden; use status=, type=, bump() or create_variation()"
        raise ValueError(msg)
    return fields


def _overlay(body: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    if not overrides:
        return body
    body.update(overrides)
    if "price" not in overrides and ("regular_price" in overrides or "sale_price" in overrides):
        body["price"] = body["sale_price"] or body["regular_price"]
        body["on_sale"] = bool(body["sale_price"])
    return body
