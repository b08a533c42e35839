"""Odoo client: suppliers (``res.partner`` with ``supplier_rank > 0``), archived ones included.

Pages go by ``id > last`` (inside ``write_date >= since`` when incremental) and each carries the
cursor to resume from, so the sync layer can checkpoint after committing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
import tenacity

from worker.infra.errors import FatalUpstreamError
from worker.infra.settings import Settings
from worker.kinds.odoo.paging import OdooCursor
from worker.kinds.odoo.rpc import UPSTREAM, Json2, OdooRpc, XmlRpc
from worker.upstream.calls import GuardedClient
from worker.upstream.http import HttpTransport
from worker.upstream.protocols import Breaker, EventSink

MODEL = "res.partner"
SUPPLIER_DOMAIN: list[Any] = [("supplier_rank", ">", 0)]
# Archived partners must come back too, or archiving is never mirrored.
CONTEXT = {"active_test": False}
WANTED_FIELDS = (
    "name", "email", "phone", "mobile", "vat", "ref", "street", "street2", "city", "zip",
    "state_id", "country_id", "country_code", "is_company", "parent_id", "commercial_partner_id",
    "company_id",
    "active", "website", "supplier_rank", "write_date", "create_date",
)  # fmt: skip
ID_PAGE = 10_000
JSON2_MIN_MAJOR = 19


@dataclass(frozen=True)
class OdooPage:
    """One page of raw partner dicts and the cursor that resumes right after it."""

    records: list[dict[str, Any]]
    next_cursor: OdooCursor


@dataclass(frozen=True)
class OdooCredentials:
    url: str  # without a trailing slash
    db: str
    login: str
    api_key: str


def odoo_credentials(settings: Settings) -> OdooCredentials:
    """What every Odoo connection needs, from the settings; each of the four is required."""
    url, db, login, key = settings.odoo_url, settings.odoo_db, settings.odoo_username, settings.odoo_api_key
    if not (url and db and login and key):
        msg = "ODOO_URL, ODOO_DB, ODOO_USERNAME and ODOO_API_KEY are required"
        raise ValueError(msg)
    return OdooCredentials(url.rstrip("/"), db, login, key.get_secret_value())


class OdooClient(GuardedClient):
    """Reads suppliers over XML-RPC or JSON-2; every request goes retry -> breaker -> transport."""

    def __init__(
        self,
        settings: Settings,
        breaker: Breaker,
        event_log: EventSink,
        retrying: tenacity.Retrying | None = None,
        *,
        correlation_id: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        creds = odoo_credentials(settings)
        self._url = creds.url
        self._transport = HttpTransport(settings, UPSTREAM, session=session)
        self._xmlrpc = XmlRpc(self._transport, creds.url, creds.db, creds.login, creds.api_key)
        self._json2 = Json2(self._transport, creds.url, creds.db, creds.api_key)
        self._protocol: str | None = None if settings.odoo_protocol == "auto" else settings.odoo_protocol
        self._page_size = settings.odoo_page_size
        self._overlap = timedelta(seconds=settings.sync_overlap_seconds)
        self._field_types: dict[str, str] | None = None
        self._guard_calls(
            UPSTREAM,
            settings,
            breaker,
            event_log,
            retrying,
            base_url=creds.url,
            correlation_id=correlation_id,
        )

    def server_time(self, *, refresh: bool = False) -> datetime | None:
        """The upstream's clock at its latest answer (its ``Date`` header), None if it sent none.

        ``refresh`` first makes one cheap search, so the answer is now rather than some earlier call.
        """
        if refresh:
            self._call("server_time", "search", {"domain": [("id", "=", 0)], "limit": 1})
        return self._transport.server_date

    @property
    def protocol(self) -> str:
        """``xmlrpc`` or ``json2``: from settings, or detected once from the server version."""
        if self._protocol is None:
            self._protocol = self._detect_protocol()
        return self._protocol

    def field_types(self) -> dict[str, str]:
        """Type of each wanted field this server has (``mobile`` is gone in 19), asked once."""
        if self._field_types is None:
            described = self._call("fields_get", "fields_get", {"attributes": ["type"]})
            self._field_types = {
                name: str(described[name].get("type", "")) for name in WANTED_FIELDS if name in described
            }
        return self._field_types

    def search_supplier_ids(self) -> list[int]:
        """Every supplier id, archived included, for reconciliation (finds hard deletes)."""
        ids: list[int] = []
        last = 0
        while True:
            named = {"domain": [*SUPPLIER_DOMAIN, ("id", ">", last)], "order": "id asc", "limit": ID_PAGE}
            batch = [int(i) for i in self._call("search_supplier_ids", "search", named)]
            ids += batch
            if len(batch) < ID_PAGE:
                return ids
            last = batch[-1]

    def search_supplier_ranks(self) -> dict[int, int]:
        """Every supplier's ``supplier_rank`` by id, archived included: the id set plus the rank that
        raw SQL raises without touching ``write_date``."""
        ranks: dict[int, int] = {}
        last = 0
        while True:
            named = {
                "domain": [*SUPPLIER_DOMAIN, ("id", ">", last)],
                "fields": ["supplier_rank"],
                "order": "id asc",
                "limit": ID_PAGE,
            }
            batch = self._call("search_supplier_ranks", "search_read", named)
            for record in batch:
                rank = record.get("supplier_rank")
                ranks[int(record["id"])] = rank if isinstance(rank, int) and not isinstance(rank, bool) else 0
            if len(batch) < ID_PAGE:
                return ranks
            last = int(batch[-1]["id"])

    def iter_supplier_pages(
        self,
        *,
        after_id: int = 0,
        since: datetime | None = None,
        page_size: int | None = None,
        cursor: OdooCursor | None = None,
    ) -> Iterator[OdooPage]:
        """Suppliers page by page: by id, or changed since ``since`` minus the overlap margin.

        ``cursor`` (a page's ``next_cursor``) resumes a pass exactly, without re-applying overlap.
        """
        position = cursor or OdooCursor.starting(since, self._overlap, after_id)
        limit = page_size or self._page_size
        fields = list(self.field_types())
        while True:
            named = {
                "domain": [*SUPPLIER_DOMAIN, *position.domain()],
                "fields": fields,
                "order": position.order(),
                "limit": limit,
            }
            records = self._call("fetch_suppliers", "search_read", named)
            position = position.advance(records)
            if records:
                yield OdooPage(records, position)
            if len(records) < limit:
                return

    def read_suppliers(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Full records for ``ids`` (e.g. suppliers found only by reconciliation)."""
        fields = list(self.field_types())
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), self._page_size):
            chunk = [int(i) for i in ids[start : start + self._page_size]]
            out += self._call("read_suppliers", "read", {"ids": chunk, "fields": fields})
        return out

    def _call(self, operation: str, method: str, named: dict[str, Any]) -> Any:
        rpc = self._rpc()
        return self._guarded(
            operation, lambda: rpc.call(MODEL, method, {**named, "context": CONTEXT}, operation=operation)
        )

    def _rpc(self) -> OdooRpc:
        if self.protocol == "json2":
            return self._json2
        if self._xmlrpc.uid is None:
            self._guarded("authenticate", self._xmlrpc.authenticate)
        return self._xmlrpc

    def _detect_protocol(self) -> str:
        major = self._guarded("detect_version", self._web_version_major)
        if major is None:
            version = self._guarded("detect_version", self._xmlrpc.version)
            info = version.get("server_version_info") or [0]
            major = int(info[0]) if isinstance(info, list) and info else 0
        return "json2" if major >= JSON2_MIN_MAJOR else "xmlrpc"

    def _web_version_major(self) -> int | None:
        """Odoo 19's ``GET /web/version``; older servers answer 404 or a non-JSON page."""
        try:
            resp = self._transport.request("GET", f"{self._url}/web/version", operation="detect_version")
            info = json.loads(resp.body).get("version_info") or []
            return int(info[0]) if info else None
        except FatalUpstreamError:
            return None
        except (ValueError, AttributeError, TypeError):
            return None
