"""History retention on the real PostgreSQL: 20,000 old runs and events pruned in batches of 5,000."""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text, update

from models import EventLog, SyncRun, SyncState
from worker.infra.db import make_session_factory
from worker.sync.retention import PruneReport, count_prunable, prune_history

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC)
OLD = 20_000
SOURCES = 50
PER_SOURCE = OLD // SOURCES
BATCH = 5000


def live(n: int) -> bool:
    """Half the sources ran yesterday; the other half stopped running long ago."""
    return n % 2 == 0


def old_runs() -> list[dict[str, Any]]:
    start = NOW - dt.timedelta(days=60)
    return [
        {
            "source": f"source-{n:02d}",
            "mode": "full" if i % 40 == 0 else "incremental",
            "status": "succeeded",
            "started_at": start + dt.timedelta(minutes=5 * i),
            "serves_through": i,
        }
        for n in range(SOURCES)
        for i in range(PER_SOURCE)
    ]


def recent_runs() -> list[dict[str, Any]]:
    yesterday = NOW - dt.timedelta(days=1)
    return [
        {"source": f"source-{n:02d}", "mode": mode, "status": "succeeded", "started_at": yesterday}
        for n in range(SOURCES)
        if live(n)
        for mode in ("incremental", "full")
    ]


def events(count: int, age: dt.timedelta) -> list[dict[str, Any]]:
    start = NOW - age
    return [
        {
            "event_type": "sync.skipped_breaker_open",
            "aggregate_id": f"source-{i % SOURCES:02d}",
            "occurred_at": start + dt.timedelta(seconds=i),
            "payload": {"tick": i},
            "event_metadata": {},
        }
        for i in range(count)
    ]


def newest_old_run_per_stale_source_and_mode(engine: Engine) -> set[int]:
    query = text(
        "SELECT DISTINCT ON (source, mode) id FROM sync_runs WHERE started_at < :cutoff "
        "ORDER BY source, mode, started_at DESC, id DESC"
    )
    with engine.connect() as conn:
        ids = conn.execute(query, {"cutoff": NOW - dt.timedelta(days=30)}).scalars()
        rows = conn.execute(select(SyncRun.id, SyncRun.source).where(SyncRun.id.in_(list(ids)))).all()
    return {row.id for row in rows if not live(int(row.source.rsplit("-", 1)[1]))}


@pytest.fixture
def filled(clean_pg: Engine) -> dict[str, Any]:
    with clean_pg.begin() as conn:
        conn.execute(insert(SyncRun), old_runs())
        conn.execute(insert(SyncRun), recent_runs())
        conn.execute(insert(EventLog), events(OLD, dt.timedelta(days=100)))
        conn.execute(insert(EventLog), events(10, dt.timedelta(days=1)))
        # One live source's old run still running (a stuck row), another's the run its state points at.
        stuck, pointed = conn.execute(
            select(SyncRun.id).where(SyncRun.source == "source-00").order_by(SyncRun.id).limit(2)
        ).scalars()
        conn.execute(update(SyncRun).where(SyncRun.id == stuck).values(status="running"))
        conn.execute(insert(SyncState).values(source="source-00", last_run_id=pointed))
    kept = newest_old_run_per_stale_source_and_mode(clean_pg) | {stuck, pointed}
    return {"engine": clean_pg, "kept": kept}


def test_prunes_twenty_thousand_old_rows_in_batches_keeping_the_protected_runs(
    filled: dict[str, Any],
) -> None:
    engine: Engine = filled["engine"]
    kept: set[int] = filled["kept"]
    assert len(kept) == (SOURCES // 2) * 2 + 2  # stale sources: their last incremental and full run
    sessions = make_session_factory(engine)
    ages = {"runs_older_than": dt.timedelta(days=30), "events_older_than": dt.timedelta(days=90)}
    remaining: list[tuple[int, int]] = []

    def watch() -> bool:
        with engine.connect() as conn:
            runs = conn.execute(select(func.count()).select_from(SyncRun)).scalar_one()
            events = conn.execute(select(func.count()).select_from(EventLog)).scalar_one()
        remaining.append((runs, events))
        return False

    assert count_prunable(sessions, now=NOW, **ages) == PruneReport(OLD - len(kept), OLD)
    report = prune_history(sessions, now=NOW, batch_size=BATCH, should_stop=watch, **ages)

    assert report == PruneReport(runs_deleted=OLD - len(kept), events_deleted=OLD, batches=8)
    with engine.connect() as conn:
        old = conn.execute(
            select(SyncRun.id).where(SyncRun.started_at < NOW - dt.timedelta(days=30))
        ).scalars()
        assert set(old) == kept
        assert conn.execute(select(func.count()).select_from(SyncRun)).scalar_one() == len(kept) + len(
            recent_runs()
        )
        assert conn.execute(select(func.count()).select_from(EventLog)).scalar_one() == 10
    # No transaction deleted more than one batch of either table.
    for (runs, events), (runs_after, events_after) in pairwise(remaining):
        assert runs - runs_after <= BATCH and events - events_after <= BATCH
