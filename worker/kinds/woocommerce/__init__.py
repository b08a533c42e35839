"""WooCommerce products and variations (REST v3): the ``woocommerce`` kind."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from models import Product
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

AUTH_STYLES = ("basic", "query")


class WooCommerceKind(SourceKind):
    name = "woocommerce"
    label = "WooCommerce"
    default_source = "woocommerce-products"
    table = table_of(Product)
    key = "woo_id"
    credential_fields = ("consumer_key", "consumer_secret")
    optional_options = ("auth",)
    option_choices = {"auth": AUTH_STYLES}
    # Pages are always 100 records, WooCommerce's maximum; how many are fetched at once is the source's.
    overrides = ("concurrency",)

    def from_environment(self, settings: Settings) -> SourceConfig | None:
        if not settings.woocommerce_url:
            return None
        credentials = {
            "consumer_key": settings.woocommerce_consumer_key,
            "consumer_secret": settings.woocommerce_consumer_secret,
        }
        return SourceConfig(
            name=self.default_source,
            kind=self.name,
            url=settings.woocommerce_url,
            options={"auth": settings.woocommerce_auth},
            credentials={k: v for k, v in credentials.items() if v is not None},
            from_environment=True,
        )

    def configure(self, settings: Settings, source: SourceConfig) -> Settings:
        key, key_secret = (source.credentials.get(f) for f in self.credential_fields)
        return settings.model_copy(
            update={
                "woocommerce_url": source.url,
                "woocommerce_consumer_key": secret(key.get_secret_value()) if key else None,
                "woocommerce_consumer_secret": secret(key_secret.get_secret_value()) if key_secret else None,
                "woocommerce_auth": source.options.get("auth", settings.woocommerce_auth),
                "woocommerce_page_concurrency": source.concurrency or settings.woocommerce_page_concurrency,
                "woocommerce_breaker": self.breaker_policy(settings, source),
            }
        )

    def build_client(
        self, settings: Settings, breaker: Breaker, event_log: EventSink, retrying: tenacity.Retrying
    ) -> Any:
        from worker.kinds.woocommerce.client import WooCommerceClient

        return WooCommerceClient(settings, breaker, event_log, retrying)

    def run_pass(
        self, ctx: RunContext, client: Any, bookmark: Bookmark, settings: Settings
    ) -> dt.datetime | None:
        from worker.kinds.woocommerce.passes import run_woocommerce

        overlap = dt.timedelta(seconds=settings.sync_overlap_seconds)
        return run_woocommerce(ctx, client, bookmark, overlap, settings.woocommerce_page_concurrency)

    def probe(self, settings: Settings) -> ProbeReport:
        from worker.kinds.woocommerce.probe import probe_woocommerce

        return probe_woocommerce(settings)

    def breaker_settings(self, settings: Settings) -> BreakerSettings:
        return settings.woocommerce_breaker


KIND = WooCommerceKind()
