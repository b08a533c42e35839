"""Odoo partners that are suppliers (XML-RPC or JSON-2): the ``odoo`` kind."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from models import Supplier
from worker.infra.settings import BreakerSettings, Settings
from worker.kinds.base import SourceKind, secret
from worker.sources.config import SourceConfig
from worker.sync.sources import table_of

if TYPE_CHECKING:
    import tenacity

    from worker.sync.context import RunContext
    from worker.sync.state import Bookmark
    from worker.upstream.probe import ProbeReport
    from worker.upstream.protocols import Breaker, EventSink

PROTOCOLS = ("auto", "xmlrpc", "json2")


class OdooKind(SourceKind):
    name = "odoo"
    label = "Odoo"
    default_source = "odoo-suppliers"
    table = table_of(Supplier)
    key = "odoo_id"
    credential_fields = ("api_key",)
    required_options = ("db", "username")
    optional_options = ("protocol",)
    option_choices = {"protocol": PROTOCOLS}
    overrides = ("page_size",)

    def from_environment(self, settings: Settings) -> SourceConfig | None:
        if not settings.odoo_url:
            return None
        options = {
            "db": settings.odoo_db,
            "username": settings.odoo_username,
            "protocol": settings.odoo_protocol,
        }
        key = settings.odoo_api_key
        return SourceConfig(
            name=self.default_source,
            kind=self.name,
            url=settings.odoo_url,
            options={k: v for k, v in options.items() if v is not None},
            credentials={"api_key": key} if key is not None else {},
            from_environment=True,
        )

    def configure(self, settings: Settings, source: SourceConfig) -> Settings:
        key = source.credentials.get("api_key")
        return settings.model_copy(
            update={
                "odoo_url": source.url,
                "odoo_db": source.options.get("db"),
                "odoo_username": source.options.get("username"),
                "odoo_api_key": secret(key.get_secret_value()) if key is not None else None,
                "odoo_protocol": source.options.get("protocol", settings.odoo_protocol),
                "odoo_page_size": source.page_size or settings.odoo_page_size,
                "odoo_breaker": self.breaker_policy(settings, source),
            }
        )

    def build_client(
        self, settings: Settings, breaker: Breaker, event_log: EventSink, retrying: tenacity.Retrying
    ) -> Any:
        from worker.kinds.odoo.client import OdooClient

        return OdooClient(settings, breaker, event_log, retrying)

    def run_pass(
        self, ctx: RunContext, client: Any, bookmark: Bookmark, settings: Settings
    ) -> dt.datetime | None:
        from worker.kinds.odoo.passes import run_odoo

        return run_odoo(ctx, client, bookmark)

    def probe(self, settings: Settings) -> ProbeReport:
        from worker.kinds.odoo.probe import probe_odoo

        return probe_odoo(settings)

    def breaker_settings(self, settings: Settings) -> BreakerSettings:
        return settings.odoo_breaker


KIND = OdooKind()
