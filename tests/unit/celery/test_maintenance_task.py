"""`tasks.maintenance.prune_history`: retention from settings, a report back, an event only on failure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

import tasks.maintenance as maintenance
from models import EventLog, SyncRun
from worker.celeryapp import deps as deps_module
from worker.infra.db import make_engine, make_session_factory, upgrade_database


class RecordingEventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, event_type: str, **kwargs: Any) -> None:
        self.events.append((event_type, kwargs))


def ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


@pytest.fixture
def env(settings_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'maintenance.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    settings = settings_factory(history_retention_days=10, event_retention_days=20)
    events = RecordingEventLog()
    monkeypatch.setattr(deps_module, "get_settings", lambda: settings)
    monkeypatch.setattr(deps_module, "get_session_factory", lambda: make_session_factory(engine))
    monkeypatch.setattr(deps_module, "get_event_log", lambda: events)
    with engine.begin() as conn:
        run = {"source": "woocommerce-products", "mode": "incremental", "status": "succeeded"}
        conn.execute(insert(SyncRun), [{**run, "started_at": ago(d)} for d in (11, 9)])
        event = {"event_type": "sync.skipped", "payload": {}, "event_metadata": {}}
        conn.execute(insert(EventLog), [{**event, "occurred_at": ago(d)} for d in (21, 19)])
    yield {"engine": engine, "events": events}
    engine.dispose()


def counts(engine: Any) -> tuple[int, int]:
    with engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(SyncRun)).scalar_one()
        events = conn.execute(select(func.count()).select_from(EventLog)).scalar_one()
    return int(runs), int(events)


def test_prunes_by_the_configured_retention_and_returns_the_report(env: dict[str, Any]) -> None:
    report = maintenance.prune_history()
    assert report == {"runs_deleted": 1, "events_deleted": 1, "batches": 2, "stopped": False}
    assert counts(env["engine"]) == (1, 1)
    assert env["events"].events == []  # success leaves no trace in event_log


def test_a_warm_shutdown_stops_it_before_the_next_batch(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "shutdown_requested", lambda: True)
    assert maintenance.prune_history()["stopped"] is True
    assert counts(env["engine"]) == (2, 2)


def test_a_failure_is_recorded_and_raised(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = make_engine(f"sqlite:///{tmp_path / 'no-tables.db'}")  # no schema: the first batch fails
    monkeypatch.setattr(deps_module, "get_session_factory", lambda: make_session_factory(empty))
    try:
        with pytest.raises(OperationalError):
            maintenance.prune_history()
    finally:
        empty.dispose()
    [(event_type, fields)] = env["events"].events
    assert event_type == maintenance.PRUNE_FAILED_EVENT
    assert fields["payload"]["error"] == "OperationalError"
    assert "no such table" in fields["payload"]["message"]
    assert len(fields["payload"]["message"]) <= maintenance.ERROR_MAX


def test_registered_under_its_name_with_late_acks() -> None:
    task = maintenance.prune_history
    assert task.name == "tasks.maintenance.prune_history"
    assert task.acks_late is True
    assert task.ignore_result is False
