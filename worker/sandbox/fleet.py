"""Many WooCommerce shops or Odoo databases served by one process, for fleet-sized runs.

```python
with WooFleet(shops=500, size=20, latency_ms=100) as fleet:
    for name in fleet:
        fleet.source(name)            # {"name", "kind", "url", "options", "credentials"}
    fleet["shop-007"].faults.set(kind="hang")
    fleet.edit("shop-007")            # {"id", "modified", "modified_at", ...}: when upstream changed
    fleet.throttle.set(rate=20)       # the host answers 429 above 20 requests/s, all shops together
```

Each tenant is an ordinary simulator (``WooCommerceSimulator``, ``OdooSimulator``) with its own seed,
so catalogs, ids and credentials are independent and ids repeat from one tenant to the next. Over
HTTP each tenant also has ``POST <url>/__faults__`` (as a single simulator) and ``POST <url>/__edit__``.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from worker.sandbox.fleet_http import FleetServer
from worker.sandbox.http import Simulator
from worker.sandbox.odoo import OdooSimulator
from worker.sandbox.throttle import HostThrottle
from worker.sandbox.woocommerce import WooCommerceSimulator

DEFAULT_SIZE = 20
WOO_STAMP = "%Y-%m-%dT%H:%M:%S"
PUBLISHED = frozenset({"publish"})

S = TypeVar("S", bound=Simulator)


def tenant_names(prefix: str, count: int) -> list[str]:
    """``shop-001``, ``shop-002``...: zero-padded so that they sort in creation order."""
    width = max(3, len(str(count)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, count + 1)]


class Fleet(abc.ABC, Generic[S]):
    """Tenants behind one ``FleetServer``; ``fleet[name]`` is the tenant's own simulator."""

    kind: str

    def __init__(
        self,
        tenants: dict[str, S],
        *,
        host: str,
        port: int,
        latency_ms: float,
        throttle: HostThrottle | None = None,
    ) -> None:
        self.tenants = tenants
        self.server = FleetServer(
            tenants, self.edit, host=host, port=port, latency_ms=latency_ms, throttle=throttle
        )
        # Every tenant is behind the same host, so each one's ``throttle`` is the server's.
        for tenant in tenants.values():
            tenant.throttle = self.server.throttle
        self._edits = itertools.count(1)

    def __getitem__(self, name: str) -> S:
        return self.tenants[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tenants)

    def __len__(self) -> int:
        return len(self.tenants)

    @property
    def throttle(self) -> HostThrottle:
        """The host's hidden rate limit, counters and arrival log, shared by every tenant."""
        return self.server.throttle

    @property
    def latency_ms(self) -> float:
        """Added to every API request of every tenant (control requests excepted)."""
        return self.server.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.server.latency_ms = value

    def url_of(self, name: str) -> str:
        return self.server.url_of(name)

    def start(self) -> Self:
        self.server.start()
        for name, tenant in self.tenants.items():
            tenant.mount(self.server.url_of(name))
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def edit(
        self, name: str, record_id: int | None = None, fields: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Change one record as the upstream's admin would, and say when upstream stamped it.

        Without ``record_id`` a record every sync reads is picked; without ``fields`` its name
        changes, so the mirror sees different content and not only a newer stamp.

        Raises:
            KeyError: no tenant ``name``, or no such record.
            ValueError: a field the upstream would not let an edit set.
        """
        tenant = self.tenants[name]
        chosen, needed = self._pick(tenant) if record_id is None else (record_id, {})
        changes = dict(fields) if fields else {"name": f"Sandbox edit {next(self._edits)}"}
        record = self._change(tenant, chosen, {**needed, **changes})
        shown, stored = self._modified(tenant, record)
        return {
            "tenant": name,
            "id": chosen,
            # As the API shows it, and as stored upstream (UTC, ISO 8601) for measuring lag.
            "modified": shown,
            "modified_at": stored.isoformat(),
            "record": record,
        }

    def sources(self) -> Iterator[dict[str, Any]]:
        return (self.source(name) for name in self.tenants)

    @abc.abstractmethod
    def source(self, name: str) -> dict[str, Any]:
        """What registering the tenant as a source takes: name, kind, url, options, credentials."""

    @abc.abstractmethod
    def _pick(self, tenant: S) -> tuple[int, dict[str, Any]]:
        """A record a sync reads, and what the edit must also set to make it one (KeyError: none)."""

    @abc.abstractmethod
    def _change(self, tenant: S, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """The upstream's own edit, through the catalog."""

    @abc.abstractmethod
    def _modified(self, tenant: S, record: dict[str, Any]) -> tuple[str, datetime]:
        """The modification stamp as the API shows it, and as upstream stores it."""


class WooFleet(Fleet[WooCommerceSimulator]):
    """``shops`` independent WooCommerce stores at ``http://host:port/shop-NNN``."""

    kind = "woocommerce"

    def __init__(
        self,
        shops: int = 2,
        size: int = DEFAULT_SIZE,
        *,
        seed: int = 1,
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "shop",
        clock: Callable[[], datetime] | None = None,
        throttle: HostThrottle | None = None,
    ) -> None:
        tenants = {
            name: WooCommerceSimulator(seed + i, size, clock=clock)
            for i, name in enumerate(tenant_names(prefix, shops))
        }
        super().__init__(tenants, host=host, port=port, latency_ms=latency_ms, throttle=throttle)

    def source(self, name: str) -> dict[str, Any]:
        shop = self.tenants[name]
        return {
            "name": name,
            "kind": self.kind,
            "url": shop.base_url,
            "options": {},
            "credentials": {"consumer_key": shop.consumer_key, "consumer_secret": shop.consumer_secret},
        }

    def _pick(self, tenant: WooCommerceSimulator) -> tuple[int, dict[str, Any]]:
        ids = tenant.catalog.query_products(statuses=PUBLISHED, orderby="id", descending=False)
        if not ids:
            msg = "the shop has no published product"
            raise KeyError(msg)
        return ids[0], {}

    def _change(self, tenant: WooCommerceSimulator, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return tenant.catalog.change(record_id, **fields)

    def _modified(self, tenant: WooCommerceSimulator, record: dict[str, Any]) -> tuple[str, datetime]:
        shown = str(record["date_modified_gmt"])
        return shown, datetime.strptime(shown, WOO_STAMP).replace(tzinfo=UTC)


class OdooFleet(Fleet[OdooSimulator]):
    """``databases`` independent Odoo servers at ``http://host:port/db-NNN``, serving database ``db-NNN``."""

    kind = "odoo"

    def __init__(
        self,
        databases: int = 2,
        size: int = DEFAULT_SIZE,
        *,
        seed: int = 1,
        version: str = "17.0",
        xmlrpc_enabled: bool = True,
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "db",
        clock: Callable[[], datetime] | None = None,
        throttle: HostThrottle | None = None,
    ) -> None:
        tenants = {
            name: OdooSimulator(
                seed + i, size, version=version, clock=clock, db=name, login=f"sync@{name}.test"
            )
            for i, name in enumerate(tenant_names(prefix, databases))
        }
        super().__init__(tenants, host=host, port=port, latency_ms=latency_ms, throttle=throttle)

    def source(self, name: str) -> dict[str, Any]:
        odoo = self.tenants[name]
        return {
            "name": name,
            "kind": self.kind,
            "url": odoo.base_url,
            "options": {"db": odoo.db, "username": odoo.login},
            "credentials": {"api_key": odoo.api_key},
        }

    def _pick(self, tenant: OdooSimulator) -> tuple[int, dict[str, Any]]:
        supplier = next(tenant.catalog.suppliers(), None)
        if supplier is not None:
            return int(supplier["id"]), {}
        # A small database may have no supplier at all (about 1 in 400 of 20 partners): the edit
        # then makes its first partner one, through a write, which stamps write_date as Odoo does.
        partners = tenant.catalog.ids()
        if not partners:
            msg = "the database has no partner"
            raise KeyError(msg)
        return min(partners), {"supplier_rank": 1}

    def _change(self, tenant: OdooSimulator, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        return tenant.catalog.change(record_id, **fields)

    def _modified(self, tenant: OdooSimulator, record: dict[str, Any]) -> tuple[str, datetime]:
        # The API truncates write_date to the second; the stored stamp keeps its microseconds.
        stored: datetime = tenant.catalog.value(int(record["id"]), "write_date")
        return str(record["write_date"]), stored.replace(tzinfo=UTC)
