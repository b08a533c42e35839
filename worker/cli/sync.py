"""`syncworker sync`: enqueue a sync now, and with ``--wait`` follow it to the end.

Exit status with ``--wait``: 0 succeeded or skipped because another run of the same source is
already running (that run covers the request); 1 failed (or dropped after repeated crashes);
3 partial (the run finished but some records were skipped or failed: the mirror is not exact);
4 skipped because the upstream's breaker is open; 124 still not finished after ``--timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import SyncRun
from worker.celery_config import ODOO_QUEUE, WOOCOMMERCE_QUEUE, CeleryConfigError
from worker.cli.output import EXIT_CONFIG, cli_settings, console
from worker.db import make_engine, make_session_factory
from worker.schedule import ODOO_TASK, WOOCOMMERCE_TASK

POLL_SECONDS = 0.5
EXIT_FAILED = 1
EXIT_PARTIAL = 3
EXIT_BREAKER_OPEN = 4
EXIT_TIMEOUT = 124
EXIT_CODES = {
    "succeeded": 0,
    "skipped_already_running": 0,
    "partial": EXIT_PARTIAL,
    "skipped_breaker_open": EXIT_BREAKER_OPEN,
    "failed": EXIT_FAILED,
    "redelivery_limit": EXIT_FAILED,
}


@dataclass(frozen=True)
class Target:
    task: str
    queue: str
    source: str


TARGETS = {
    "odoo-suppliers": Target(ODOO_TASK, ODOO_QUEUE, "odoo-suppliers"),
    "woocommerce-products": Target(WOOCOMMERCE_TASK, WOOCOMMERCE_QUEUE, "woocommerce-products"),
}


def exit_code(status: str) -> int:
    """Unknown statuses count as failures: a script must never mistake them for success."""
    return EXIT_CODES.get(status, EXIT_FAILED)


def latest_run(session_factory: sessionmaker[Session], task_id: str) -> SyncRun | None:
    """The newest run of this task id: a run handed back at shutdown has a successor with the same id."""
    stmt = select(SyncRun).where(SyncRun.task_id == task_id).order_by(SyncRun.id.desc()).limit(1)
    with session_factory() as session:
        return session.scalars(stmt).first()


def describe(run: SyncRun | None, state: str) -> str:
    if run is None:
        return f"task {state.lower()}, no run started yet"
    if run.finished_at is None:
        # The engine writes a run's counts when it closes; until then only its start is known.
        return f"run {run.id} {run.status} since {run.started_at:%H:%M:%S} UTC"
    return (
        f"run {run.id} {run.status}: fetched {run.fetched}, inserted {run.inserted}, "
        f"updated {run.updated}, unchanged {run.unchanged}, skipped {run.skipped}, failed {run.failed}"
    )


def final_status(result: Any, run: SyncRun | None) -> str:
    """The outcome from the task's return value; the run row when the task died without one."""
    if result.successful() and isinstance(result.result, dict):
        return str(result.result.get("status", "failed"))
    return run.status if run is not None and result.successful() else "failed"


def wait_for(
    app: Celery,
    task_id: str,
    session_factory: sessionmaker[Session],
    *,
    timeout: float,
    show: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Poll until the task ends; returns its final status, or None on timeout."""
    deadline = clock() + timeout
    last = ""
    while True:
        result = app.AsyncResult(task_id)
        run = latest_run(session_factory, task_id)
        line = describe(run, result.state)
        if line != last:
            show(line)
            last = line
        if result.ready():
            return final_status(result, latest_run(session_factory, task_id))
        if clock() >= deadline:
            return None
        sleep(POLL_SECONDS)


def _enqueue(ctx: click.Context, target: Target, full: bool, wait: bool, timeout: float) -> None:
    from worker.celery_app import create_app

    settings = cli_settings(ctx)
    try:
        app = create_app(settings)
    except CeleryConfigError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(EXIT_CONFIG)
    # Only ``full`` travels in the message: credentials stay in each worker's settings.
    task_id = app.send_task(target.task, kwargs={"full": full}, queue=target.queue).id
    click.echo(task_id)
    if not wait:
        return
    engine = make_engine(settings.database_url, connect_timeout=3)
    out = console()
    try:
        status = wait_for(app, task_id, make_session_factory(engine), timeout=timeout, show=out.print)
    finally:
        engine.dispose()
    if status is None:
        click.echo(f"not finished after {timeout:g}s; the task keeps running", err=True)
        ctx.exit(EXIT_TIMEOUT)
    click.echo(f"{target.source} {status}")
    ctx.exit(exit_code(status))


def _command(name: str) -> click.Command:
    target = TARGETS[name]

    @click.command(name=name, help=f"Enqueue one {name} sync now (incremental unless --full).")
    @click.option("--full", is_flag=True, help="Full reconciliation instead of an incremental pass.")
    @click.option(
        "--wait", is_flag=True, help="Show progress until the run ends; exit non-zero if it failed."
    )
    @click.option(
        "--timeout",
        default=3600.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="Seconds --wait follows the run before giving up (exit 124); the run itself goes on.",
    )
    @click.pass_context
    def command(ctx: click.Context, full: bool, wait: bool, timeout: float) -> None:
        _enqueue(ctx, target, full, wait, timeout)

    return command


@click.group()
def sync() -> None:
    """Run a sync now instead of waiting for the schedule.

    \b
    Exit status with --wait: 0 succeeded (or another run already covers it), 1 failed,
    3 partial, 4 skipped because the breaker is open, 124 timed out waiting.
    """


for _name in TARGETS:
    sync.add_command(_command(_name))
