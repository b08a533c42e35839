"""In-process fakes for the sync engine's collaborators: upstream clients, event log, clock."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from worker.kinds.odoo.paging import OdooCursor

SAMPLES = Path(__file__).parent / "samples"
T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


class FakeClock:
    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@dataclass
class FakeEventLog:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, event_type: str, **kwargs: Any) -> None:
        self.events.append((event_type, kwargs))

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [kw for t, kw in self.events if t == event_type]


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    page: int
    total_pages: int | None = None
    total: int | None = None


def woo_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


Failure = Callable[[str, dict[str, Any]], BaseException | None]


class FakeWoo:
    """A WooCommerce catalog with the API's listing semantics (status=any excludes trash, windows)."""

    def __init__(self, clock: FakeClock, per_page: int = 3) -> None:
        self.clock = clock
        self.per_page = per_page
        self.products: dict[int, dict[str, Any]] = {}
        self.variations: dict[int, dict[int, dict[str, Any]]] = {}
        self.fail: Failure = lambda op, args: None
        self.calls: list[tuple[str, dict[str, Any]]] = []

    # -- catalog edits, each bumping date_modified like WooCommerce does ---------------------------
    def add_product(self, pid: int, **fields: Any) -> dict[str, Any]:
        raw = copy.deepcopy(sample("woo_product_variable.json" if fields.get("type") == "variable"
                                   else "woo_product_simple.json"))  # fmt: skip
        raw.update(id=pid, name=f"Product {pid}", slug=f"product-{pid}", sku=f"SKU-{pid}", variations=[])
        raw.update(fields)
        self.products[pid] = raw
        self.touch(pid)
        return raw

    def add_variation(self, parent: int, vid: int, **fields: Any) -> dict[str, Any]:
        raw = copy.deepcopy(sample("woo_variation.json"))
        raw.update(id=vid, parent_id=parent, sku=self.products[parent]["sku"])  # inherits the SKU
        raw.update(fields)
        self.variations.setdefault(parent, {})[vid] = raw
        self.products[parent]["variations"].append(vid)
        raw["date_modified_gmt"] = woo_time(self.clock.tick())
        return raw

    def touch(self, pid: int) -> None:
        self.products[pid]["date_modified_gmt"] = woo_time(self.clock.tick())

    def change(self, pid: int, **fields: Any) -> None:
        self.products[pid].update(fields)
        self.touch(pid)

    # -- the client API ----------------------------------------------------------------------------
    def _check(self, op: str, **args: Any) -> None:
        self.calls.append((op, args))
        exc = self.fail(op, args)
        if exc is not None:
            raise exc

    def _pages(self, op: str, items: Sequence[dict[str, Any]], start: int, **args: Any) -> Iterator[Page]:
        total_pages = max(1, -(-len(items) // self.per_page))
        for n in range(max(1, start), total_pages + 1):
            self._check(op, page=n, **args)
            chunk = items[(n - 1) * self.per_page : n * self.per_page]
            if chunk:
                yield Page([copy.deepcopy(r) for r in chunk], n, total_pages, len(items))

    def _listed(self, status: str) -> list[dict[str, Any]]:
        wanted = (lambda s: s != "trash") if status == "any" else (lambda s: s == status)
        return [self.products[k] for k in sorted(self.products) if wanted(self.products[k]["status"])]

    def iter_product_pages(
        self,
        *,
        modified_after: dt.datetime | None = None,
        modified_before: dt.datetime | None = None,
        status: str = "any",
        start_page: int = 1,
        include: Sequence[int] | None = None,
    ) -> Iterator[Page]:
        def in_window(raw: dict[str, Any]) -> bool:
            modified = dt.datetime.fromisoformat(raw["date_modified_gmt"]).replace(tzinfo=dt.UTC)
            after_ok = modified_after is None or modified > modified_after
            return after_ok and (modified_before is None or modified <= modified_before)

        items = [r for r in self._listed(status) if in_window(r) and (include is None or r["id"] in include)]
        return self._pages("products", items, start_page, status=status, after=modified_after)

    def iter_variation_pages(self, product_id: int, status: str = "any") -> Iterator[Page]:
        parent = self.products.get(product_id)
        trashed = parent is not None and parent["status"] == "trash"
        # A trashed parent's variations are trashed with it: listed only with status=trash.
        items = (
            []
            if trashed != (status == "trash")
            else [v for _, v in sorted(self.variations.get(product_id, {}).items())]
        )
        return self._pages("variations", items, 1, product_id=product_id)

    def variation_exists(self, product_id: int, variation_id: int) -> bool:
        self._check("variation", product_id=product_id, variation_id=variation_id)
        return variation_id in self.variations.get(product_id, {})

    def list_product_ids(self, status: str = "any", start_page: int = 1) -> Iterator[tuple[int, list[Any]]]:
        for page in self._pages("ids", self._listed(status), start_page, status=status):
            yield page.page, [r.get("id") for r in page.records]

    def newest_product_ids(self, above: int | None) -> list[int]:
        self._check("newest", above=above)
        ids = sorted((k for k, r in self.products.items() if r["status"] != "trash"), reverse=True)
        return [] if above is None else [i for i in ids if i > above]

    def server_time(self) -> dt.datetime | None:
        return self.clock.now


@dataclass(frozen=True)
class OdooPage:
    records: list[dict[str, Any]]
    next_cursor: OdooCursor


def odoo_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


class FakeOdoo:
    """res.partner suppliers: id pages inside a write_date filter, write_date stamps, supplier_rank drift."""

    def __init__(self, clock: FakeClock, page_size: int = 3, overlap: float = 120.0) -> None:
        self.clock = clock
        self.page_size = page_size
        self.overlap = dt.timedelta(seconds=overlap)
        self.partners: dict[int, dict[str, Any]] = {}
        self.fail: Failure = lambda op, args: None
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def add(self, pid: int, *, supplier_rank: int = 1, **fields: Any) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "id": pid, "name": f"Partner {pid}", "email": f"p{pid}@supplier.test", "phone": False,
            "vat": False, "ref": False, "street": "Rue 1", "street2": False, "city": "Brussels",
            "zip": "1000", "state_id": False, "country_id": [21, "Belgium"], "country_code": "BE",
            "is_company": True, "parent_id": False, "active": True, "website": False,
            "supplier_rank": supplier_rank, "write_date": odoo_time(self.clock.tick()),
        }  # fmt: skip
        raw.update(fields)
        self.partners[pid] = raw
        return raw

    def write(self, pid: int, **fields: Any) -> None:
        self.partners[pid].update(fields, write_date=odoo_time(self.clock.tick()))

    def raise_rank_by_sql(self, pid: int) -> None:
        """What a first vendor bill does: supplier_rank goes up, write_date does not move."""
        self.partners[pid]["supplier_rank"] += 1

    def _check(self, op: str, **args: Any) -> None:
        self.calls.append((op, args))
        exc = self.fail(op, args)
        if exc is not None:
            raise exc

    def _suppliers(self) -> list[dict[str, Any]]:
        return [p for _, p in sorted(self.partners.items()) if p["supplier_rank"] > 0]

    def server_time(self, *, refresh: bool = False) -> dt.datetime | None:
        if refresh:
            self._check("clock")
        return self.clock.now

    def search_supplier_ids(self) -> list[int]:
        self._check("search_ids")
        return [p["id"] for p in self._suppliers()]

    def search_supplier_ranks(self) -> dict[int, int]:
        self._check("search_ids")
        return {p["id"]: p["supplier_rank"] for p in self._suppliers()}

    def iter_supplier_pages(
        self,
        *,
        after_id: int = 0,
        since: dt.datetime | None = None,
        page_size: int | None = None,
        cursor: OdooCursor | None = None,
    ) -> Iterator[OdooPage]:
        position = cursor or OdooCursor.starting(since, self.overlap, after_id)
        while True:
            self._check("pages", after_id=position.after_id)
            rows = [p for p in self._suppliers() if p["id"] > position.after_id]
            if position.since is not None:
                floor = odoo_time(position.since)
                rows = [p for p in rows if p["write_date"] >= floor]
            records = [copy.deepcopy(p) for p in rows[: self.page_size]]
            position = position.advance(records)
            if records:
                yield OdooPage(records, position)
            if len(records) < self.page_size:
                return

    def read_suppliers(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        self._check("read", ids=list(ids))
        return [copy.deepcopy(self.partners[i]) for i in ids if i in self.partners]


def money(value: Any) -> Decimal | None:
    return None if value in ("", None) else Decimal(str(value))


def kind_of(client: Any) -> Any:
    """The kind whose passes a fake client serves (a WooCommerce fake lists products)."""
    from worker.kinds import get_kind

    return get_kind("woocommerce" if hasattr(client, "iter_product_pages") else "odoo")
