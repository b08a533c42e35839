"""`syncworker events` and `syncworker runs` on the real PostgreSQL, including --follow in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner
from ops_env import BIN, clean_env
from sqlalchemy.orm import Session

from models import EventLog, SyncRun
from worker.cli import main
from worker.cli.output import CliState

NOW = dt.datetime.now(dt.UTC)


def add_event(engine: Any, event_type: str, at: dt.datetime | None = None, **payload: Any) -> int:
    with Session(engine) as session:
        row = EventLog(event_type=event_type, aggregate_id="woocommerce", payload=payload, event_metadata={})
        if at is not None:
            row.occurred_at = at
        session.add(row)
        session.commit()
        return row.id


def add_run(engine: Any, source: str, status: str, started: dt.datetime, fetched: int = 0) -> None:
    with Session(engine) as session:
        session.add(
            SyncRun(
                source=source,
                mode="full",
                status=status,
                started_at=started,
                fetched=fetched,
                inserted=fetched,
            )
        )
        session.commit()


@pytest.fixture
def cli(settings_factory: Any, migrated_pg_url: str) -> Any:
    settings = settings_factory(database_url=migrated_pg_url)

    def run(*args: str) -> Any:
        result = CliRunner().invoke(main, list(args), obj=CliState(settings=settings))
        assert result.exit_code == 0, result.output
        return result

    return run


def test_events_filter_by_type_prefix_and_since(clean_pg: Any, cli: Any) -> None:
    add_event(clean_pg, "breaker.opened", NOW - dt.timedelta(hours=3), reason="old")
    add_event(clean_pg, "breaker.opened", NOW - dt.timedelta(minutes=5), reason="recent")
    add_event(clean_pg, "sync.failed", NOW - dt.timedelta(minutes=1))
    # A literal "%" or "_" in the prefix must not act as a wildcard.
    add_event(clean_pg, "breakerXopened", NOW)

    rows = json.loads(cli("events", "--type", "breaker.", "--since", "1h", "--json").stdout)
    assert [(r["event_type"], r["payload"]) for r in rows] == [("breaker.opened", {"reason": "recent"})]
    assert len(json.loads(cli("events", "--type", "breaker.", "--json").stdout)) == 2
    assert json.loads(cli("events", "--type", "breaker_", "--json").stdout) == []
    everything = json.loads(cli("events", "--limit", "2", "--json").stdout)
    assert [r["event_type"] for r in everything] == ["sync.failed", "breakerXopened"]


def test_events_table_shows_rows(clean_pg: Any, cli: Any) -> None:
    add_event(clean_pg, "sync.failed", reason="boom")
    out = cli("events").stdout
    assert "sync.failed" in out
    assert "boom" in out


def test_runs_newest_first_with_filters(clean_pg: Any, cli: Any) -> None:
    add_run(clean_pg, "odoo-suppliers", "succeeded", NOW - dt.timedelta(minutes=9), fetched=42)
    add_run(clean_pg, "woocommerce-products", "failed", NOW - dt.timedelta(minutes=5))
    add_run(clean_pg, "woocommerce-products", "succeeded", NOW - dt.timedelta(minutes=1), fetched=7)

    rows = json.loads(cli("runs", "--json").stdout)
    assert [(r["source"], r["status"]) for r in rows] == [
        ("woocommerce-products", "succeeded"),
        ("woocommerce-products", "failed"),
        ("odoo-suppliers", "succeeded"),
    ]
    assert rows[0]["counts"]["fetched"] == 7
    failed = json.loads(cli("runs", "--status", "failed", "--json").stdout)
    assert len(failed) == 1
    odoo = json.loads(cli("runs", "--source", "odoo-suppliers", "--limit", "5", "--json").stdout)
    assert [r["counts"]["inserted"] for r in odoo] == [42]
    assert "odoo-suppliers" in cli("runs").stdout


def test_follow_prints_new_events_as_json_lines(clean_pg: Any, migrated_pg_url: str, tmp_path: Any) -> None:
    add_event(clean_pg, "breaker.opened", reason="before")
    proc = subprocess.Popen(
        [str(BIN / "syncworker"), "events", "--follow", "--json", "--type", "breaker."],
        env=clean_env(DATABASE_URL=migrated_pg_url),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["payload"] == {"reason": "before"}
        add_event(clean_pg, "sync.failed", reason="other type")
        new_id = add_event(clean_pg, "breaker.closed", reason="after")
        second = json.loads(proc.stdout.readline())
        assert (second["id"], second["event_type"]) == (new_id, "breaker.closed")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
