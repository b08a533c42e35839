"""`syncworker events`: read `event_log`, filtered by type prefix and time, optionally following it."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

import click
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models import EventLog
from worker.cli.output import cli_settings, echo_json, json_option, render_table, to_json
from worker.infra.db import make_engine

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
POLL_SECONDS = 1.0


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``15m``, ``2h``, ``1d`` ago, or an ISO 8601 time (naive times are UTC)."""
    match = DURATION.match(text.strip())
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * UNIT_SECONDS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{text!r} is neither a duration like 15m / 2h / 1d nor an ISO 8601 time"
        raise click.BadParameter(msg, param_hint="--since") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def fetch_events(
    engine: Engine,
    *,
    type_prefix: str | None,
    since: dt.datetime | None,
    after_id: int = 0,
    limit: int,
    newest: bool,
) -> list[dict[str, Any]]:
    """Matching events in id order; ``newest`` takes the last ``limit`` instead of the first."""
    stmt = select(EventLog).where(EventLog.id > after_id)
    if type_prefix:
        stmt = stmt.where(EventLog.event_type.like(_escape_like(type_prefix) + "%", escape="\\"))
    if since is not None:
        stmt = stmt.where(EventLog.occurred_at >= since)
    stmt = stmt.order_by(EventLog.id.desc() if newest else EventLog.id.asc()).limit(limit)
    with Session(engine) as session:
        rows = [event_as_dict(row) for row in session.scalars(stmt)]
    return sorted(rows, key=lambda r: r["id"])


def event_as_dict(row: EventLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_type": row.event_type,
        "occurred_at": row.occurred_at,
        "aggregate_id": row.aggregate_id,
        "correlation_id": row.correlation_id,
        "payload": row.payload,
        "metadata": row.event_metadata,
    }


def follow(
    poll: Callable[[int], list[dict[str, Any]]],
    emit: Callable[[dict[str, Any]], None],
    *,
    after_id: int,
    sleep: Callable[[float], None] = time.sleep,
    keep_going: Callable[[], bool] = lambda: True,
) -> int:
    """Print each new event once, by id, until ``keep_going()`` turns false; returns the last id."""
    while keep_going():
        for event in poll(after_id):
            emit(event)
            after_id = max(after_id, int(event["id"]))
        sleep(POLL_SECONDS)
    return after_id


def _emit_line(as_json: bool) -> Callable[[dict[str, Any]], None]:
    def emit(event: dict[str, Any]) -> None:
        if as_json:
            echo_json(event, lines=True)
            return
        when = event["occurred_at"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        where = f" [{event['aggregate_id']}]" if event["aggregate_id"] else ""
        click.echo(
            f"{event['id']:>8} {when} {event['event_type']}{where} {to_json(event['payload'], indent=None)}"
        )

    return emit


@click.command()
@click.option("--type", "type_prefix", help="Only event types starting with this, e.g. breaker. or sync.")
@click.option("--since", help="Only events since this time: 15m, 2h, 1d or an ISO 8601 time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--follow", "-f", "following", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@json_option
@click.pass_context
def events(
    ctx: click.Context,
    type_prefix: str | None,
    since: str | None,
    limit: int,
    following: bool,
    as_json: bool,
) -> None:
    """The event log, oldest first; the last --limit events that match."""
    since_at = parse_since(since, dt.datetime.now(dt.UTC)) if since else None
    engine = make_engine(cli_settings(ctx).database_url, connect_timeout=3)
    try:
        rows = fetch_events(engine, type_prefix=type_prefix, since=since_at, limit=limit, newest=True)
        if not following:
            if as_json:
                echo_json(rows)
            else:
                table = [
                    (r["id"], r["occurred_at"], r["event_type"], r["aggregate_id"], r["payload"])
                    for r in rows
                ]
                render_table("event_log", ["id", "occurred", "type", "aggregate", "payload"], table)
            return
        emit = _emit_line(as_json)
        for row in rows:
            emit(row)

        def poll(after: int) -> list[dict[str, Any]]:
            return fetch_events(
                engine, type_prefix=type_prefix, since=since_at, after_id=after, limit=1000, newest=False
            )

        with contextlib.suppress(KeyboardInterrupt):
            follow(poll, emit, after_id=rows[-1]["id"] if rows else 0)
    finally:
        engine.dispose()
