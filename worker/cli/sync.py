"""`syncworker sync`: enqueue a sync now, and with ``--wait`` follow the run that serves it.

Every request gets a number; a run serves every request numbered before it started, in its mode or
a lesser one (a full run serves incremental requests, never the other way round). ``--wait``
follows the first such run to its end, wherever it came from: this request's own task, the
follow-up run a request that met a running sync turns into, or the continuation of a run handed
back at shutdown or at its time budget.

Exit status with ``--wait``: 0 succeeded; 1 failed (or dropped after repeated crashes); 3 partial
(the run finished but some records were skipped or failed: the mirror is not exact); 4 skipped or
stopped because the upstream's breaker is open; 124 still not served after ``--timeout``.
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
from worker.celeryapp.config import SYNC_TASK, CeleryConfigError, queue_for
from worker.cli.output import EXIT_CONFIG, cli_settings, console
from worker.infra.db import make_engine, make_session_factory
from worker.sync.runs import covering

POLL_SECONDS = 0.5
EXIT_FAILED = 1
EXIT_PARTIAL = 3
EXIT_BREAKER_OPEN = 4
EXIT_TIMEOUT = 124
EXIT_CODES = {
    "succeeded": 0,
    "partial": EXIT_PARTIAL,
    "skipped_breaker_open": EXIT_BREAKER_OPEN,
    "interrupted": EXIT_BREAKER_OPEN,  # only a breaker that opened mid-run ends a run for good this way
    "failed": EXIT_FAILED,
    "redelivery_limit": EXIT_FAILED,
}


@dataclass(frozen=True)
class Request:
    source: str
    number: int
    full: bool


def exit_code(status: str) -> int:
    """Unknown statuses count as failures: a script must never mistake them for success."""
    return EXIT_CODES.get(status, EXIT_FAILED)


SERVED = ("succeeded", "partial")
# The request's own task is still on its way: its outcome, not another run's failure, answers it.
UNDECIDED = ("PENDING", "RECEIVED", "STARTED", "RETRY", "REJECTED")


def covering_runs(session_factory: sessionmaker[Session], request: Request) -> list[SyncRun]:
    """Runs whose pass started after ``request`` was made, in a mode that serves it, oldest first.

    A run handed back (shutdown, time budget, superseded) is left out: its continuation is one of them.
    """
    conditions = covering(request.source, request=request.number, full=request.full)
    stmt = select(SyncRun).where(*conditions).order_by(SyncRun.id)
    with session_factory() as session:
        runs = list(session.scalars(stmt))
    return [r for r in runs if not (r.status == "interrupted" and (r.details or {}).get("resumable"))]


def serving_run(session_factory: sessionmaker[Session], request: Request) -> SyncRun | None:
    """The run that answers ``request`` so far: one that served it, else one still going, else the first
    that ended without serving it (which answers only a deferred request: see ``wait_for``)."""
    runs = covering_runs(session_factory, request)
    served = [r for r in runs if r.status in SERVED]
    going = [r for r in runs if r.finished_at is None]
    first = served or going or runs
    return first[0] if first else None


def run_by_id(session_factory: sessionmaker[Session], run_id: Any) -> SyncRun | None:
    if not isinstance(run_id, int):
        return None
    with session_factory() as session:
        return session.get(SyncRun, run_id)


def describe(run: SyncRun | None, state: str) -> str:
    if run is None:
        return f"task {state.lower()}, no run serving the request yet"
    if run.finished_at is None:
        return (
            f"run {run.id} ({run.mode}) {run.status} since {run.started_at:%H:%M:%S} UTC: "
            f"fetched {run.fetched}, inserted {run.inserted}, updated {run.updated}"
        )
    return (
        f"run {run.id} ({run.mode}) {run.status}: fetched {run.fetched}, inserted {run.inserted}, "
        f"updated {run.updated}, unchanged {run.unchanged}, skipped {run.skipped}, failed {run.failed}"
    )


def task_failed_without_run(result: Any) -> str | None:
    """A task that failed before any run could serve the request (e.g. the redelivery limit)."""
    if result.state != "FAILURE":
        return None
    return "redelivery_limit" if "redelivery_limit" in str(result.result) else "failed"


def own_outcome(result: Any, session_factory: sessionmaker[Session]) -> str | None:
    """The outcome the request's own task ended with, when it ran (or found its request served)."""
    if result.state in UNDECIDED or result.state == "DEFERRED":
        return None
    if (failed := task_failed_without_run(result)) is not None:
        return failed
    summary = result.result if isinstance(result.result, dict) else {}
    run = run_by_id(session_factory, summary.get("run_id"))
    if run is not None and run.finished_at is not None:
        return run.status
    status = summary.get("status")
    return str(status) if status and status != "served" else None


def wait_for(
    app: Celery,
    task_id: str,
    session_factory: sessionmaker[Session],
    request: Request,
    *,
    timeout: float,
    show: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Poll until a run serving ``request`` ends; returns its final status, or None on timeout."""
    deadline = clock() + timeout
    last = ""
    while True:
        result = app.AsyncResult(task_id)
        run = serving_run(session_factory, request)
        line = describe(run, result.state)
        if line != last:
            show(line)
            last = line
        if run is not None and run.status in SERVED:
            return run.status
        # A deferred request is served by the first run after it, whatever that run's outcome; any
        # other request by its own task, which may still run after a run that failed.
        if result.state == "DEFERRED" and run is not None and run.finished_at is not None:
            return run.status
        if (outcome := own_outcome(result, session_factory)) is not None:
            return outcome
        if clock() >= deadline:
            return None
        sleep(POLL_SECONDS)


def send_request(
    app: Celery, session_factory: sessionmaker[Session], source: str, *, full: bool
) -> tuple[str, Request]:
    """Number a request for ``source`` and enqueue it; returns its task id and the request."""
    from worker.sync.requests import number_request

    number = number_request(session_factory, source)
    # Only the source's name, ``full`` and the request number travel: credentials stay in the workers.
    kwargs = {"source": source, "full": full, "request": number}
    task_id = app.send_task(SYNC_TASK, kwargs=kwargs, queue=queue_for(full)).id
    return str(task_id), Request(source, number, full)


def _enqueue(ctx: click.Context, source: str, full: bool, wait: bool, timeout: float) -> None:
    from worker.celeryapp.app import close_app, create_app
    from worker.sources.catalog import UnknownSource, find_source

    settings = cli_settings(ctx)
    try:
        app = create_app(settings)
    except CeleryConfigError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(EXIT_CONFIG)
    engine = make_engine(settings.database_url, connect_timeout=3)
    sessions = make_session_factory(engine)
    try:
        try:
            if not find_source(settings, sessions, source, credentials=False).enabled:
                click.echo(
                    f"source {source!r} is disabled: `syncworker sources enable {source}` first", err=True
                )
                ctx.exit(EXIT_CONFIG)
        except UnknownSource as exc:
            click.echo(str(exc), err=True)
            ctx.exit(EXIT_CONFIG)
        task_id, request = send_request(app, sessions, source, full=full)
        click.echo(task_id)
        if not wait:
            return
        status = wait_for(app, task_id, sessions, request, timeout=timeout, show=console().print)
    finally:
        engine.dispose()
        close_app(app)
    if status is None:
        click.echo(f"not served after {timeout:g}s; the request stays queued", err=True)
        ctx.exit(EXIT_TIMEOUT)
    click.echo(f"{source} {status}")
    ctx.exit(exit_code(status))


@click.command()
@click.argument("source")
@click.option("--full", is_flag=True, help="Full reconciliation instead of an incremental pass.")
@click.option("--wait", is_flag=True, help="Show progress until the run ends; exit non-zero if it failed.")
@click.option(
    "--timeout",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds --wait follows the request before giving up (exit 124); the run itself goes on.",
)
@click.pass_context
def sync(ctx: click.Context, source: str, full: bool, wait: bool, timeout: float) -> None:
    """Run a sync of SOURCE now instead of waiting for the schedule (incremental unless --full).

    \b
    SOURCE is a configured source's name (`syncworker sources list`); a deployment configured by
    environment variables has woocommerce-products and odoo-suppliers.
    Exit status with --wait: 0 succeeded, 1 failed,
    3 partial, 4 skipped because the breaker is open, 124 timed out waiting.
    A request that meets a running sync becomes one follow-up run after it;
    --wait follows whichever run serves the request.
    """
    _enqueue(ctx, source, full, wait, timeout)
