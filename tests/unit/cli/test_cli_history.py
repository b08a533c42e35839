"""`syncworker history prune`: retention from settings or options, a dry run that deletes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, insert, select

from models import EventLog, SyncRun
from worker.cli import main
from worker.cli.output import CliState
from worker.infra.db import make_engine, upgrade_database


def ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


@pytest.fixture
def engine(tmp_path: Any) -> Any:
    url = f"sqlite:///{tmp_path / 'syncworker.db'}"  # the database settings_factory points at
    upgrade_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def history(settings_factory: Any, engine: Engine) -> Callable[..., Result]:
    def run(*args: str, **settings: Any) -> Result:
        state = CliState(settings=settings_factory(**settings))
        return CliRunner().invoke(main, ["history", "prune", *args], obj=state)

    return run


def add_runs(engine: Engine, *days: float) -> None:
    rows = [
        {"source": "odoo-suppliers", "mode": "incremental", "status": "succeeded", "started_at": ago(d)}
        for d in days
    ]
    with engine.begin() as conn:
        conn.execute(insert(SyncRun), rows)


def add_events(engine: Engine, *days: float) -> None:
    rows = [
        {"event_type": "sync.skipped", "occurred_at": ago(d), "payload": {}, "event_metadata": {}}
        for d in days
    ]
    with engine.begin() as conn:
        conn.execute(insert(EventLog), rows)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(SyncRun)).scalar_one()
        events = conn.execute(select(func.count()).select_from(EventLog)).scalar_one()
    return int(runs), int(events)


def test_prune_uses_the_configured_retention(engine: Engine, history: Callable[..., Result]) -> None:
    add_runs(engine, 40, 31, 29, 1)
    add_events(engine, 100, 91, 89)
    result = history()
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "deleted 2 sync runs older than 30 days and 2 events older than 90 days (2 batches)"
    )
    assert counts(engine) == (2, 1)


def test_retention_comes_from_settings(engine: Engine, history: Callable[..., Result]) -> None:
    add_runs(engine, 10, 1)
    add_events(engine, 10, 1)
    result = history(history_retention_days=5, event_retention_days=7)
    assert "deleted 1 sync runs older than 5 days and 1 events older than 7 days" in result.output
    assert counts(engine) == (1, 1)


def test_options_override_the_settings(engine: Engine, history: Callable[..., Result]) -> None:
    add_runs(engine, 10, 1)
    add_events(engine, 10, 1)
    result = history("--runs-days", "20", "--events-days", "5")
    assert result.exit_code == 0, result.output
    assert "deleted 0 sync runs older than 20 days and 1 events older than 5 days" in result.output
    assert counts(engine) == (2, 1)


def test_dry_run_counts_and_deletes_nothing(engine: Engine, history: Callable[..., Result]) -> None:
    add_runs(engine, 40, 35, 1)
    add_events(engine, 100)
    result = history("--dry-run")
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip() == "would delete 2 sync runs older than 30 days and 1 events older than 90 days"
    )
    assert counts(engine) == (3, 1)


def test_json_output(engine: Engine, history: Callable[..., Result]) -> None:
    add_runs(engine, 40, 1)
    result = history("--json")
    assert json.loads(result.output) == {
        "dry_run": False,
        "runs_days": 30,
        "events_days": 90,
        "runs_deleted": 1,
        "events_deleted": 0,
        "batches": 1,
        "stopped": False,
    }


@pytest.mark.parametrize("option", ["--runs-days", "--events-days"])
def test_a_retention_below_one_day_is_refused(
    engine: Engine, history: Callable[..., Result], option: str
) -> None:
    add_runs(engine, 40, 1)
    result = history(option, "0")
    assert result.exit_code == 2
    assert "0 is not in the range x>=1" in result.output
    assert counts(engine) == (2, 0)


def test_history_is_listed() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "history" in result.output
