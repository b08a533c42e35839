"""Beat's entries follow the configured sources: created spread over their interval, scored when they are
really due, left alone while unchanged, restored when missing, removed with their source."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redbeat.schedulers

from worker.celeryapp.app import create_app
from worker.celeryapp.scheduler import SourceEntries, spread
from worker.sources.config import SourceConfig

PERIOD = 300.0


@pytest.fixture
def redis_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    monkeypatch.setattr(redbeat.schedulers, "get_redis", lambda app=None: client)
    monkeypatch.setattr("worker.celeryapp.scheduler.get_redis", lambda app=None: client)
    yield client


def shops(*names: str) -> list[SourceConfig]:
    return [SourceConfig(name=n, kind="woocommerce", url=f"https://{n}.shops.test") for n in names]


def scores(client: Any, app: Any) -> dict[str, float]:
    return {k.decode(): s for k, s in client.zrange(app.redbeat_conf.schedule_key, 0, -1, withscores=True)}


def test_entries_follow_the_sources_and_are_due_when_they_say(
    settings_factory: Any, redis_client: fakeredis.FakeRedis
) -> None:
    settings = settings_factory(sync_incremental_interval_seconds=PERIOD)
    app = create_app(settings)
    entries = SourceEntries(app, settings)
    before = time.time()
    assert entries.sync(shops("shop-a", "shop-b", "shop-c")) == (6, 0)
    due = scores(redis_client, app)
    prefix = app.redbeat_conf.key_prefix
    for name in ("shop-a", "shop-b", "shop-c"):
        first = due[f"{prefix}sync:{name}:incremental"]
        # Spread over the interval by its name, and scored at its real first tick (not earlier).
        expected = before - spread(f"sync:{name}:incremental", PERIOD) + PERIOD
        assert expected - 1 <= first <= expected + 2
    assert len({round(s) for k, s in due.items() if k.endswith(":incremental")}) == 3

    assert entries.sync(shops("shop-a", "shop-b", "shop-c")) == (0, 0)  # unchanged: nothing written
    redis_client.zrem(app.redbeat_conf.schedule_key, f"{prefix}sync:shop-b:full")  # lost by hand
    assert entries.sync(shops("shop-a", "shop-b", "shop-c")) == (1, 0)  # restored
    assert entries.sync(shops("shop-a", "shop-c")) == (0, 2)  # shop-b removed or disabled
    assert sorted(scores(redis_client, app)) == sorted(
        f"{prefix}sync:{n}:{m}" for n in ("shop-a", "shop-c") for m in ("incremental", "full")
    )
    slower = [s.model_copy(update={"incremental_interval_seconds": 60.0}) for s in shops("shop-a")]
    assert entries.sync([*slower, *shops("shop-c")]) == (1, 0)  # a changed interval is re-saved
