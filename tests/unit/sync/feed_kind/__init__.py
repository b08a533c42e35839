"""A third kind of upstream, written as a new kind would be: this folder and one registry line.

It mirrors a JSON feed of items (``{"id", "title", "updated"}``) into its own table. Nothing in the
engine, the tasks or the scheduler knows about it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, UniqueConstraint

from models.types import JSONDocument, UTCDateTime
from worker.infra.errors import InvalidRecord
from worker.infra.settings import BreakerSettings, Settings
from worker.kinds.base import SourceKind
from worker.sources.config import SourceConfig
from worker.sync.reconcile import mark_missing

METADATA = MetaData()
FEED_ITEMS = Table(
    "feed_items",
    METADATA,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("item_id", BigInteger, nullable=False),
    Column("title", Text),
    Column("raw", JSONDocument),
    Column("content_hash", String(64)),
    Column("deleted_at", UTCDateTime()),
    Column("first_synced_at", UTCDateTime()),
    Column("last_synced_at", UTCDateTime()),
    Column("updated", DateTime(timezone=True)),
    UniqueConstraint("source", "item_id"),
)


def normalize_item(raw: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(raw.get("id"), int):
        raise InvalidRecord("an item without an integer id")
    return {"item_id": raw["id"], "title": raw.get("title"), "raw": dict(raw), "updated": None}


class FeedKind(SourceKind):
    name = "feed"
    label = "Feed"
    default_source = "feed-items"
    table = FEED_ITEMS
    key = "item_id"
    credential_fields = ("token",)

    def from_environment(self, settings: Settings) -> SourceConfig | None:
        return None

    def configure(self, settings: Settings, source: SourceConfig) -> Settings:
        return settings

    def build_client(self, settings: Settings, breaker: Any, event_log: Any, retrying: Any) -> Any:
        raise NotImplementedError("the test hands the engine a client of its own")

    def run_pass(self, ctx: Any, client: Any, bookmark: Any, settings: Settings) -> dt.datetime | None:
        items = client.items()
        ctx.write(ctx.normalize_page(items, normalize_item))
        if ctx.full:
            with ctx.fenced() as conn:
                ids = [[i["id"] for i in items if isinstance(i.get("id"), int)]]
                ctx.counts.marked_deleted += mark_missing(conn, ctx.spec, ids, ctx.clock()) or 0
        return ctx.clock()

    def probe(self, settings: Settings) -> Any:
        raise NotImplementedError

    def breaker_settings(self, settings: Settings) -> BreakerSettings:
        return BreakerSettings()


KIND = FeedKind()
