"""A deterministic ``res.partner`` table: an index of the fields syncs filter on, the rest rendered.

Empty values are ``False`` (XML-RPC has no null), booleans are real booleans, many2one fields are
``[id, "display name"]`` and datetimes are naive UTC strings, as the real ORM returns them.
Like Odoo 17, ``write_date``/``create_date`` are stored with microseconds (domains and ordering see
those) but rendered truncated to the second, and one ``write`` stamps all its records alike.
"""

from __future__ import annotations

import calendar
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from worker.sandbox.rng import record_rng

ANCHOR = calendar.timegm((2025, 6, 1, 12, 0, 0))
HISTORY_SECONDS = 3 * 365 * 86400
NAME_SALT = 21
STAMP_SALT = 23
COMPANY = [1, "My Company (San Francisco)"]
FIRST = ("Ana", "Bruno", "Chloé", "Dmitri", "Eva", "François", "Gül", "Hiro", "Inês", "Jürgen", "Kasia")
LAST = ("Martins", "Okafor", "Dubois", "Ivanov", "Søndergaard", "Öztürk", "Tanaka", "Núñez", "Smith")
COMPANY_WORDS = ("Agrolait", "Axelor", "Camptocamp", "Deco", "Wood", "Bäckerei", "Ōsaka", "Nordic")
COMPANY_SUFFIX = ("Ltd", "SA", "GmbH", "S.r.l.", "& Sons", "Trading", "株式会社")
COUNTRIES = (
    (21, "Belgium", "BE"), (76, "France", "FR"), (233, "United Kingdom", "GB"),
    (105, "India", "IN"), (57, "Germany", "DE"), (31, "Brazil", "BR"), (113, "Japan", "JP"),
)  # fmt: skip
STATES = {76: (1, "Île-de-France"), 31: (2, "São Paulo"), 105: (3, "Gujarat")}
# Fields an XML-RPC or JSON-2 caller may ask for; 'mobile' is gone from Odoo 19.
FIELD_TYPES = {
    "id": "integer", "name": "char", "display_name": "char", "complete_name": "char",
    "email": "char", "phone": "char", "mobile": "char", "vat": "char", "ref": "char",
    "street": "char", "street2": "char", "city": "char", "zip": "char", "state_id": "many2one",
    "country_id": "many2one", "country_code": "char", "is_company": "boolean",
    "parent_id": "many2one", "commercial_partner_id": "many2one", "company_id": "many2one",
    "active": "boolean", "website": "char", "supplier_rank": "integer", "customer_rank": "integer",
    "comment": "html", "type": "selection", "lang": "selection", "write_date": "datetime",
    "create_date": "datetime",
}  # fmt: skip
MANY2ONE = frozenset(f for f, t in FIELD_TYPES.items() if t == "many2one")
INDEXED = ("id", "is_company", "parent_id", "active", "supplier_rank", "write_date", "create_date")
DIRECT = frozenset({"id", "is_company", "active", "supplier_rank", "write_date", "create_date"})


def odoo_datetime(stamp: datetime) -> str:
    """A stored stamp as the API returns it: the microseconds are dropped."""
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo is not None else when


@dataclass(slots=True)
class _Partner:
    id: int
    is_company: bool
    parent_id: int
    active: bool
    supplier_rank: int
    create_date: datetime  # naive UTC, with microseconds, as PostgreSQL stores it
    write_date: datetime
    overrides: dict[str, Any] = field(default_factory=dict)


class OdooCatalog:
    """Partners of one database; thread-safe, mutated by tests while the server runs."""

    def __init__(
        self, seed: int = 1, size: int = 500, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.seed = seed
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._partners: dict[int, _Partner] = {}
        self._next_id = 7
        self._generate(size)

    def _generate(self, size: int) -> None:
        rng = random.Random(self.seed)
        companies: list[int] = []
        start = ANCHOR - HISTORY_SECONDS
        for i in range(size):
            self._next_id += 1 if rng.random() < 0.05 else 0
            is_company = rng.random() < 0.4 or not companies
            parent = rng.choice(companies) if not is_company and rng.random() < 0.7 else 0
            rank = rng.randint(1, 20) if rng.random() < (0.5 if is_company else 0.1) else 0
            created = start + (HISTORY_SECONDS * i) // max(size, 1) + rng.randrange(3600)
            written = created + (rng.randrange(max(1, ANCHOR - created)) if rng.random() < 0.5 else 0)
            pid, active = self._new_id(), rng.random() > 0.07
            # Microseconds from their own generator, so the sequence above (the catalog) is unchanged.
            micros = record_rng(self.seed, STAMP_SALT, pid).randrange(1_000_000)
            create_stamp = datetime(1970, 1, 1) + timedelta(seconds=created, microseconds=micros)
            write_stamp = create_stamp + timedelta(seconds=written - created)
            partner = _Partner(pid, is_company, parent, active, rank, create_stamp, write_stamp)
            self._partners[partner.id] = partner
            if is_company:
                companies.append(partner.id)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _now(self) -> datetime:
        return naive_utc(self._clock())

    # Reading -----------------------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """Held by a search so a concurrent mutation cannot change the table mid-scan."""
        return self._lock

    def __len__(self) -> int:
        return len(self._partners)

    def __contains__(self, partner_id: object) -> bool:
        return partner_id in self._partners

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._partners)

    def get(self, partner_id: int) -> dict[str, Any]:
        """Every field of a partner, as ``read`` returns it; ``KeyError`` if it does not exist."""
        with self._lock:
            return self._render(self._partners[partner_id])

    def partners(self) -> list[_Partner]:
        """The index rows, for scans that read fields through ``value_of``."""
        with self._lock:
            return list(self._partners.values())

    def value(self, partner_id: int, name: str) -> Any:
        return self.value_of(self._partners[partner_id], name)

    def accessor(self, name: str) -> Callable[[_Partner], Any]:
        """A fast reader of one field of index rows, for domain scans."""
        if name in DIRECT:
            return attrgetter(name)
        return lambda p: self.value_of(p, name)

    def value_of(self, p: _Partner, name: str) -> Any:
        """One field, cheaply for the indexed ones (domains and ordering use this)."""
        if name in DIRECT:
            return getattr(p, name)
        if name in ("name", "display_name", "complete_name") and "name" not in p.overrides:
            return self._name(p) if name == "name" else self._display(p)
        return self._render(p)[name]

    def iter_partners(self) -> Iterator[dict[str, Any]]:
        for pid in self.ids():
            with self._lock:
                partner = self._partners.get(pid)
                if partner is not None:
                    yield self._render(partner)

    def suppliers(self) -> Iterator[dict[str, Any]]:
        """Every current supplier (``supplier_rank > 0``), archived ones included."""
        return (p for p in self.iter_partners() if p["supplier_rank"] > 0)

    def _name(self, p: _Partner) -> str:
        if "name" in p.overrides:
            return str(p.overrides["name"])
        rng = record_rng(self.seed, NAME_SALT, p.id)
        if p.is_company:
            first, second = rng.sample(COMPANY_WORDS, 2)
            return f"{first} {second} {rng.choice(COMPANY_SUFFIX)}"
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}"

    def _display(self, p: _Partner) -> str:
        parent = self._partners.get(p.parent_id)
        return f"{self._name(parent)}, {self._name(p)}" if parent else self._name(p)

    def _render(self, p: _Partner) -> dict[str, Any]:
        rng = record_rng(self.seed, NAME_SALT + 1, p.id)
        name = self._name(p)
        parent = self._partners.get(p.parent_id)
        commercial = parent if parent is not None and not p.is_company else p
        country = rng.choice(COUNTRIES)
        state = STATES.get(country[0])
        slug = "".join(c for c in name.lower() if c.isascii() and c.isalnum())[:12] or "partner"
        record: dict[str, Any] = {
            "id": p.id,
            "name": name,
            "display_name": self._display(p),
            "complete_name": self._display(p),
            "email": f"{slug}@{slug}.test" if rng.random() < 0.8 else False,
            "phone": f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
            if rng.random() < 0.6
            else False,
            "mobile": f"+33 6 {rng.randint(10000000, 99999999)}" if rng.random() < 0.3 else False,
            "vat": f"{country[2]}{rng.randint(10**8, 10**9 - 1)}"
            if p.is_company and rng.random() < 0.6
            else False,
            "ref": f"P{p.id:05d}" if rng.random() < 0.3 else False,
            "street": f"{rng.randint(1, 300)} Rue {rng.choice(LAST)}" if rng.random() < 0.9 else False,
            "street2": False,
            "city": rng.choice(("Brussels", "Paris", "London", "Mumbai", "São Paulo", "Köln", False)),
            "zip": f"{rng.randint(1000, 99999)}" if rng.random() < 0.8 else False,
            "state_id": list(state) if state else False,
            "country_id": [country[0], country[1]],
            "country_code": country[2],
            "is_company": p.is_company,
            "parent_id": [parent.id, self._display(parent)] if parent is not None else False,
            "commercial_partner_id": [commercial.id, self._display(commercial)],
            "company_id": list(COMPANY) if rng.random() < 0.3 else False,
            "active": p.active,
            "website": f"https://{slug}.test" if p.is_company and rng.random() < 0.5 else False,
            "supplier_rank": p.supplier_rank,
            "customer_rank": rng.choice((0, 0, 1, 3)),
            "comment": False,
            "type": "contact",
            "lang": rng.choice(("en_US", "fr_FR", "pt_BR")),
            "write_date": odoo_datetime(p.write_date),
            "create_date": odoo_datetime(p.create_date),
        }
        record.update(p.overrides)
        return record

    # Mutations ---------------------------------------------------------------------------------

    def create_partner(self, **fields: Any) -> dict[str, Any]:
        """A new partner stamped now; ``is_company``, ``parent_id`` (an id), ``supplier_rank``, ``active``."""
        with self._lock:
            now = self._now()
            partner = _Partner(
                self._new_id(),
                bool(fields.pop("is_company", False)),
                int(fields.pop("parent_id", 0) or 0),
                bool(fields.pop("active", True)),
                int(fields.pop("supplier_rank", 0)),
                now,
                now,
            )
            self._partners[partner.id] = partner
            self._apply(partner, fields)
            return self._render(partner)

    def change(self, partner_id: int, **fields: Any) -> dict[str, Any]:
        """A ``write`` on one partner: the fields change and ``write_date`` moves to now."""
        return self.write_many([partner_id], **fields)[0]

    def write_many(self, partner_ids: Iterable[int], **fields: Any) -> list[dict[str, Any]]:
        """One ``write`` on many partners (a mass edit, an import): one transaction, one stamp."""
        with self._lock:
            partners = [self._partners[pid] for pid in partner_ids]
            now = self._now()
            for partner in partners:
                self._apply(partner, dict(fields))
                partner.write_date = now
            return [self._render(p) for p in partners]

    def archive(self, partner_id: int) -> dict[str, Any]:
        """``active = False``; archiving is a write, so ``write_date`` moves."""
        return self.change(partner_id, active=False)

    def unarchive(self, partner_id: int) -> dict[str, Any]:
        return self.change(partner_id, active=True)

    def make_supplier(self, partner_id: int) -> dict[str, Any]:
        """What a first vendor bill does: raw SQL raises ``supplier_rank`` and leaves ``write_date``."""
        with self._lock:
            partner = self._partners[partner_id]
            partner.supplier_rank += 1
            return self._render(partner)

    def delete(self, partner_id: int) -> None:
        """``unlink`` or a merge: a hard delete with no tombstone."""
        with self._lock:
            del self._partners[partner_id]

    def set_write_date(self, partner_id: int, when: datetime) -> dict[str, Any]:
        """Stamp ``write_date`` (a UTC datetime, or naive meaning UTC), e.g. to model a long transaction."""
        with self._lock:
            partner = self._partners[partner_id]
            partner.write_date = naive_utc(when)
            return self._render(partner)

    def _apply(self, partner: _Partner, fields: dict[str, Any]) -> None:
        for name in ("active", "is_company"):
            if name in fields:
                setattr(partner, name, bool(fields.pop(name)))
        if "supplier_rank" in fields:
            partner.supplier_rank = int(fields.pop("supplier_rank"))
        if "parent_id" in fields:
            partner.parent_id = int(fields.pop("parent_id") or 0)
        unknown = [k for k in fields if k not in FIELD_TYPES or k in INDEXED]
        if unknown:
            msg = f"cannot set {', '.join(unknown)} on res.partner"
            raise ValueError(msg)
        partner.overrides.update(fields)
