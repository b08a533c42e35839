"""The engine is generic over kinds: a third kind, registered with one line, syncs and reconciles
through the same run_sync as WooCommerce and Odoo, each source's rows apart."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from worker import kinds
from worker.infra.db import make_session_factory
from worker.sync import RunStatus, SyncDeps, run_sync


class FakeFeed:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.item_list = items

    def items(self) -> list[dict[str, Any]]:
        return list(self.item_list)


@pytest.fixture
def feed_kind(monkeypatch: pytest.MonkeyPatch, sqlite_engine: Engine) -> Any:
    monkeypatch.setitem(kinds.REGISTRY, "feed", "feed_kind")  # the one registry line
    kind = kinds.get_kind("feed")
    kind.table.metadata.create_all(sqlite_engine)  # its migration, in a real project
    return kind


def rows(engine: Engine, table: Any, source: str) -> dict[int, Any]:
    with engine.connect() as conn:
        found = conn.execute(select(table).where(table.c.source == source)).mappings()
        return {r["item_id"]: dict(r) for r in found}


def test_a_third_kind_syncs_and_reconciles_through_the_generic_engine(
    feed_kind: Any, settings_factory: Any, sqlite_engine: Engine, fake_redis: Any, events: Any, clock: Any
) -> None:
    settings = settings_factory()
    one = FakeFeed([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}, {"id": "x"}])
    other = FakeFeed([{"id": 1, "title": "other a"}, {"id": 2, "title": "other b"}])

    def deps(client: FakeFeed) -> SyncDeps:
        sessions = make_session_factory(sqlite_engine)
        return SyncDeps(settings, sessions, fake_redis, events, None, client, feed_kind, clock=clock)

    def sync(name: str, client: FakeFeed) -> Any:
        return run_sync(name, deps(client), full=True, task_id=None, should_stop=lambda: False)

    first = sync("feed-one", one)
    assert first.status is RunStatus.PARTIAL  # the item without an id was skipped, and said so
    assert len(events.of("feed.sync.record_invalid")) == 1
    assert sync("feed-two", other).status is RunStatus.SUCCEEDED
    one.item_list = [{"id": 1, "title": "a2"}]  # item 2 is gone from feed-one only
    assert sync("feed-one", one).counts.marked_deleted == 1
    mine, theirs = (
        rows(sqlite_engine, feed_kind.table, "feed-one"),
        rows(sqlite_engine, feed_kind.table, "feed-two"),
    )
    assert mine[1]["title"] == "a2" and mine[2]["deleted_at"] is not None
    assert theirs[1]["title"] == "other a" and theirs[2]["deleted_at"] is None
