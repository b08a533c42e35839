"""`syncworker runs`: the recent sync runs, with their counts and outcome."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from models import SyncRun
from worker.cli.output import cli_settings, echo_json, json_option, render_table
from worker.infra.db import make_engine, make_session_factory

COUNT_FIELDS = ("fetched", "inserted", "updated", "unchanged", "skipped", "failed", "marked_deleted")
COLUMNS = ("id", "source", "mode", "status", "started", "seconds", *COUNT_FIELDS, "error")


def run_as_dict(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "source": run.source,
        "mode": run.mode,
        "status": run.status,
        "task_id": run.task_id,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_seconds": run.duration_seconds,
        "counts": {name: getattr(run, name) for name in COUNT_FIELDS},
        "error": run.error,
    }


def query_runs(
    database_url: str, *, source: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    """Newest first."""
    stmt = select(SyncRun).order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).limit(limit)
    if source:
        stmt = stmt.where(SyncRun.source == source)
    if status:
        stmt = stmt.where(SyncRun.status == status)
    engine = make_engine(database_url, connect_timeout=3)
    try:
        with make_session_factory(engine)() as session:
            return [run_as_dict(r) for r in session.scalars(stmt)]
    finally:
        engine.dispose()


@click.command()
@click.option("--source", help="Only this source, e.g. woocommerce-products or odoo-suppliers.")
@click.option("--status", help="Only runs that ended with this status, e.g. failed.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@json_option
@click.pass_context
def runs(ctx: click.Context, source: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Recent sync runs with their counts and status, newest first."""
    rows = query_runs(cli_settings(ctx).database_url, source=source, status=status, limit=limit)
    if as_json:
        echo_json(rows)
        return
    table = [
        (
            r["id"],
            r["source"],
            r["mode"],
            r["status"],
            r["started_at"],
            r["duration_seconds"],
            *r["counts"].values(),
            (r["error"] or "")[:80],
        )
        for r in rows
    ]
    render_table(f"sync runs (newest {limit})", COLUMNS, table)
