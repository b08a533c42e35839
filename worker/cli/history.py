"""`syncworker history`: keep `sync_runs` and `event_log` bounded by their retention."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import click

from worker.cli.output import cli_settings, echo_json, json_option
from worker.infra.db import make_engine, make_session_factory
from worker.sync.retention import PruneReport, count_prunable, prune_history

DAYS = click.IntRange(min=1)


@click.group()
def history() -> None:
    """Sync run and event history."""


@history.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--runs-days", type=DAYS, help="Keep this many days of runs [default: HISTORY_RETENTION_DAYS].")
@click.option(
    "--events-days", type=DAYS, help="Keep this many days of events [default: EVENT_RETENTION_DAYS]."
)
@json_option
@click.pass_context
def prune(
    ctx: click.Context, dry_run: bool, runs_days: int | None, events_days: int | None, as_json: bool
) -> None:
    """Delete runs and events older than their retention, in small transactions.

    A run still running, a source's last run and the newest run of each source and mode always stay.
    """
    settings = cli_settings(ctx)
    runs_days = runs_days or settings.history_retention_days
    events_days = events_days or settings.event_retention_days
    runs_age, events_age = dt.timedelta(days=runs_days), dt.timedelta(days=events_days)
    engine = make_engine(settings.database_url, connect_timeout=3)
    try:
        sessions = make_session_factory(engine)
        now = dt.datetime.now(dt.UTC)
        action = count_prunable if dry_run else prune_history
        report = action(sessions, now=now, runs_older_than=runs_age, events_older_than=events_age)
    finally:
        engine.dispose()
    if as_json:
        echo_json({"dry_run": dry_run, "runs_days": runs_days, "events_days": events_days, **asdict(report)})
        return
    click.echo(describe(report, dry_run=dry_run, runs_days=runs_days, events_days=events_days))


def describe(report: PruneReport, *, dry_run: bool, runs_days: int, events_days: int) -> str:
    verb = "would delete" if dry_run else "deleted"
    text = (
        f"{verb} {report.runs_deleted} sync runs older than {runs_days} days "
        f"and {report.events_deleted} events older than {events_days} days"
    )
    return text if dry_run else f"{text} ({report.batches} batches)"
