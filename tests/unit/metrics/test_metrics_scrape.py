"""The scrape-time gauges: last successes from sync_state, the schedule, events waiting in the spools."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from prometheus_client.core import Metric
from sqlalchemy import Table, insert

from models import SyncState
from worker.infra import metrics
from worker.infra.db import make_engine
from worker.infra.eventspool import FileSpool
from worker.infra.metrics_scrape import (
    EventSpoolCollector,
    SourceSuccess,
    SyncIntervalCollector,
    SyncStateCollector,
    database_success_reader,
)

AT = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def values(collected: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families: list[Metric] = list(collected)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def test_last_successes_are_reported_per_source_and_only_when_known() -> None:
    rows = [
        SourceSuccess("woocommerce-products", AT, AT - dt.timedelta(days=1)),
        SourceSuccess("odoo-suppliers", None, None),
    ]
    got = values(SyncStateCollector(lambda: rows).collect())
    assert got == {
        ("syncworker_sync_state_up", ()): 1,
        (
            "syncworker_sync_last_success_timestamp_seconds",
            (("source", "woocommerce-products"),),
        ): AT.timestamp(),
        ("syncworker_sync_last_full_success_timestamp_seconds", (("source", "woocommerce-products"),)): (
            AT - dt.timedelta(days=1)
        ).timestamp(),
    }


def test_an_unreadable_sync_state_is_reported_as_down_not_as_old() -> None:
    def unreadable() -> list[SourceSuccess]:
        raise OSError("connection refused")

    families = list(SyncStateCollector(unreadable).collect())
    assert values(families) == {("syncworker_sync_state_up", ()): 0}
    # The families are still described, so the metric names stay on the page.
    assert {f.name for f in families} >= {"syncworker_sync_last_success_timestamp_seconds"}


def test_the_database_reader_returns_aware_times_from_sqlite(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory(database_url=f"sqlite:///{tmp_path / 'state.db'}")
    engine = make_engine(settings.database_url)
    cast(Table, SyncState.__table__).create(engine)
    with engine.begin() as conn:
        conn.execute(insert(SyncState), [{"source": "odoo-suppliers", "last_success_at": AT}])
    engine.dispose()
    assert database_success_reader(settings)() == [SourceSuccess("odoo-suppliers", AT, None)]


def test_intervals_are_exported_as_configured() -> None:
    got = values(SyncIntervalCollector({("woo", "full"): 86400.0, ("woo", "incremental"): 300.0}).collect())
    assert got == {
        ("syncworker_sync_interval_seconds", (("mode", "full"), ("source", "woo"))): 86400.0,
        ("syncworker_sync_interval_seconds", (("mode", "incremental"), ("source", "woo"))): 300.0,
    }


def test_spool_counts_and_an_unreachable_redis_leaves_its_sample_out(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path / "events.spool")
    assert spool.pending() == 0  # no file yet
    spool.append('{"a":1}')
    spool.append('{"a":2}')
    with spool.path.open("a") as torn:
        torn.write('{"half')  # an append cut short by a crash is not a waiting event

    def redis_down() -> int:
        raise redis.ConnectionError("refused")

    assert values(EventSpoolCollector(lambda: 4, spool.pending).collect()) == {
        ("syncworker_event_spool_events", (("spool", "redis"),)): 4,
        ("syncworker_event_spool_events", (("spool", "file"),)): 2,
    }
    assert values(EventSpoolCollector(redis_down, spool.pending).collect()) == {
        ("syncworker_event_spool_events", (("spool", "file"),)): 2,
    }


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_every_finished_outcome_starts_at_zero(mode: str) -> None:
    metrics.zero_sync_run_series([("zero-test-source", mode)])
    got = values(metrics.SYNC_RUNS.collect())
    statuses = {
        dict(labels)["status"]: value
        for (name, labels), value in got.items()
        if name == "syncworker_sync_runs_total"
        and dict(labels)["source"] == "zero-test-source"
        and dict(labels)["mode"] == mode
    }
    assert {"succeeded", "partial", "failed", "skipped_breaker_open", "interrupted"} <= set(statuses)
    assert "running" not in statuses
    assert set(statuses.values()) == {0}
