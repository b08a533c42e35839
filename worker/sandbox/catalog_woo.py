"""A deterministic WooCommerce catalog: a compact index plus overrides, rendered per request.

Products and variations share one id space (both are WordPress posts), so product ids have gaps.
The index holds only what queries filter and sort on (type, status, dates); every other field is
rendered from (seed, id) by ``woo_render`` and then overlaid with the fields a test changed.
``related_ids`` is the one exception: the real server picks them at random on every read.
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
# Fields that change between two reads of an unchanged record; a mirror must not hash them.
VOLATILE_FIELDS = ("related_ids",)
RELATED_COUNT = 5


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
    # The status a trashed post had, which restoring brings back (WordPress keeps it in post meta).
    trashed_from: str = "publish"


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
        self._related_pool: list[int] | None = None
        # Not the record rng: related_ids must differ between two reads of the same record.
        # Replace it with a seeded ``random.Random`` to make a test's draws reproducible.
        self.related_rng = random.Random()
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
                variation = self._add_variation(post, "private" if rng.random() < 0.05 else "publish", vmod)
                if status == "trash":
                    # A trashed parent took its variations to the bin with it, at the same moment.
                    variation.trashed_from, variation.status = variation.status, "trash"
                    variation.modified = max(vmod, modified)

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
        self._related_pool = None

    def _related_ids(self, product_id: int) -> list[int]:
        if self._related_pool is None:
            self._related_pool = [p.id for p in self._products.values() if p.status == "publish"]
        pool = self._related_pool
        picks = self.related_rng.sample(pool, min(len(pool), RELATED_COUNT + 1))
        return [i for i in picks if i != product_id][:RELATED_COUNT]

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
        trashed = post.status == "trash"
        # A trashed variable product lists no variations although they still exist, in the bin.
        variations = [] if trashed else post.variations
        body = woo_render.product_body(self.seed, post.id, post.type, variations, post.created, self.site_url)
        body.update(woo_render.dates(post.created, post.modified, SITE_OFFSET))
        body["status"] = post.status
        body = _overlay(body, post.overrides)
        body["related_ids"] = self._related_ids(post.id)
        if trashed:
            _mark_trashed(body, post)
        return body

    def _render_variation(self, post: _Post, parent: dict[str, Any]) -> dict[str, Any]:
        body = woo_render.variation_body(self.seed, post.id, parent, post.created, self.site_url)
        body.update(woo_render.dates(post.created, post.modified, SITE_OFFSET))
        body["status"] = post.status
        return _overlay(body, post.overrides)

    # Mutations ---------------------------------------------------------------------------------

    def create_product(
        self,
        *,
        variation_count: int | None = None,
        date_created: datetime | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A new product stamped now; a variable product gets ``variation_count`` (default 2) variations.

        ``date_created`` (aware, or naive meaning UTC) backdates it as an import does: WooCommerce
        then sets ``date_modified`` to the same old date, yet the id is still a new, higher one.
        """
        with self._lock:
            now = self._now() if date_created is None else _epoch(date_created)
            post = self._add_product("simple", "publish", now, now)
            try:
                self._apply(post, fields)
            except ValueError:
                del self._products[post.id]
                raise
            default = 2 if post.type == "variable" else 0
            for _ in range(default if variation_count is None else variation_count):
                self._add_variation(post, "publish", now)
            if post.status == "trash":
                self._move_variations(post, to_trash=True, now=now)
            self._changed()
            return self._render(post)

    def create_variation(self, product_id: int, **fields: Any) -> dict[str, Any]:
        """A variation added through the REST API; saving it re-syncs and so re-stamps the parent."""
        with self._lock:
            parent = self._products[product_id]
            variation = self._add_variation(parent, str(fields.pop("status", "publish")), self._now())
            variation.created = variation.modified
            variation.overrides.update(_without_indexed(fields))
            parent.modified = variation.modified
            self._changed()
            return self.get(variation.id)

    def change(self, product_id: int, **fields: Any) -> dict[str, Any]:
        """Edit a product as the admin screen does: the fields change and ``date_modified`` moves.

        ``status="trash"`` trashes its variations too; ``type`` away from ``variable`` force-deletes
        them (WooCommerce's ``product_type_changed``), so their ids answer 404 afterwards.
        """
        with self._lock:
            post = self._products[product_id]
            was_type, was_status = post.type, post.status
            self._apply(post, fields)
            now = self._now()
            post.modified = now
            if was_type == "variable" and post.type != "variable":
                for variation_id in post.variations:
                    self._variations.pop(variation_id, None)
                post.variations.clear()
            if post.status == "trash" and was_status != "trash":
                post.trashed_from = was_status
                self._move_variations(post, to_trash=True, now=now)
            elif was_status == "trash" and post.status != "trash":
                self._move_variations(post, to_trash=False, now=now)
            self._changed()
            return self._render(post)

    def _move_variations(self, parent: _Post, *, to_trash: bool, now: int) -> None:
        # wp_trash_post / wp_untrash_post run per variation, and each is a post update that stamps it.
        for variation_id in parent.variations:
            variation = self._variations[variation_id]
            if to_trash and variation.status != "trash":
                variation.trashed_from, variation.status = variation.status, "trash"
            elif not to_trash and variation.status == "trash":
                variation.status = variation.trashed_from
            else:
                continue
            variation.modified = now

    def change_variation(self, product_id: int, variation_id: int, **fields: Any) -> dict[str, Any]:
        """Edit one variation through the REST API: the parent's ``date_modified`` moves too.

        Measured on WooCommerce 9.9.5; releases before the parent re-sync on save did not do this.
        """
        with self._lock:
            variation = self._variation_of(product_id, variation_id)
            self._apply(variation, fields)
            variation.modified = self._now()
            self._products[product_id].modified = variation.modified
            self._changed()
            return self.get(variation_id)

    def change_stock(self, record_id: int, quantity: int) -> dict[str, Any]:
        """Stock moved by an order: WooCommerce does NOT bump ``date_modified`` for this.

        Orders reduce stock with a direct meta update, not through the REST API, so neither the
        record nor a variation's parent is re-stamped.
        """
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
        """Move to the bin with its variations; trashing is an update, so the date moves."""
        return self.change(product_id, status="trash")

    def restore(self, product_id: int) -> dict[str, Any]:
        """Take a product (and its variations) out of the bin, back to the status it had before.

        WooCommerce hooks ``wp_untrash_post_status`` so products do not fall back to WordPress's
        ``draft`` default. Restoring is an update, so the date moves.
        """
        with self._lock:
            post = self._products[product_id]
            if post.status != "trash":
                return self._render(post)
            return self.change(product_id, status=post.trashed_from)

    def backdate(self, product_id: int, when: datetime) -> dict[str, Any]:
        """Set ``date_created`` to ``when`` as an import does; ``date_modified`` follows it (measured)."""
        with self._lock:
            post = self._products[product_id]
            post.created = post.modified = _epoch(when)
            self._changed()
            return self._render(post)

    def delete(self, product_id: int) -> None:
        """Force delete: the product and its variations are gone, no tombstone."""
        with self._lock:
            post = self._products.pop(product_id)
            for variation_id in post.variations:
                self._variations.pop(variation_id, None)
            self._changed()

    def delete_variation(self, product_id: int, variation_id: int) -> None:
        """Delete one variation through the REST API: the parent's ``date_modified`` moves too.

        The REST controller defers a sync of the parent, which saves it -- the same save that makes
        a variation edit bump its parent (measured on 9.9.5); the deletion itself was not measured.
        """
        with self._lock:
            self._variation_of(product_id, variation_id)
            parent = self._products[product_id]
            parent.variations.remove(variation_id)
            del self._variations[variation_id]
            parent.modified = self._now()
            self._changed()

    def corrupt(self, record_id: int, **fields: Any) -> dict[str, Any]:
        """Render a record with any field forced, ``id`` included (a plugin's broken filter, a bad
        import): what a malformed record in a real listing looks like. Nothing else changes."""
        with self._lock:
            post = self._products.get(record_id) or self._variations[record_id]
            post.overrides.update(fields)
            self._changed()
            return self.get(record_id)

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


def _epoch(when: datetime) -> int:
    return int((when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp())


def _mark_trashed(body: dict[str, Any], post: _Post) -> None:
    """What WordPress leaves on a trashed post: a mangled slug, a bare permalink, trash meta."""
    slug = str(body["slug"])
    body["slug"] = f"{slug}__trashed"
    body["permalink"] = body["permalink"].split("/product/", 1)[0] + f"/?post_type=product&p={post.id}"
    first = post.id * 10 + 7
    body["meta_data"] = [
        *body["meta_data"],
        {"id": first, "key": "_wp_trash_meta_status", "value": post.trashed_from},
        {"id": first + 1, "key": "_wp_trash_meta_time", "value": str(post.modified)},
        {"id": first + 2, "key": "_wp_desired_post_slug", "value": slug},
    ]


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
