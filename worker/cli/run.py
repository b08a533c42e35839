"""`syncworker run`: the main job. Sources configured: migrate, then the workers and beat.

Sources are the ``sources`` table's (`syncworker sources add|apply`) and the upstreams configured by
environment variables; every one of them is scheduled. Incremental and full runs get a worker each, so
a long full sync never holds up the incremental runs.

No upstream but a server configured (DATABASE_URL, REDIS_URL or CELERY_BROKER_URL, in the environment
or .env) looks like a deployment whose upstream secrets did not arrive: it refuses, naming them, rather
than run the demo next to real data. Nothing configured at all (a fresh checkout): the demo, announced.

The worker and beat are separate child processes. SIGINT/SIGTERM are forwarded to each child's main
pid only, so Celery shuts down warm (a signal to the whole process group would kill running tasks);
if one child exits on its own the other is stopped too and the exit status says so.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

import click

from worker.celeryapp.config import FULL_QUEUE, INCREMENTAL_QUEUE
from worker.cli.demo import DEFAULT_DEMO_DIR
from worker.cli.output import EXIT_CONFIG, cli_settings
from worker.cli.supervisor import Supervisor
from worker.infra.eventspool import check_spool_writable
from worker.infra.settings import Settings, SettingsError

POLL_SECONDS = 0.5
# After the grace period a cold shutdown (SIGQUIT) still restores prefetched messages; SIGKILL would not.
COLD_AFTER_SECONDS = 10.0

# All of an upstream's variables enable it (worker/infra/settings.py); a partly set one is a settings error.
UPSTREAM_VARIABLES = {
    "Odoo": ("ODOO_URL", "ODOO_DB", "ODOO_USERNAME", "ODOO_API_KEY"),
    "WooCommerce": ("WOOCOMMERCE_URL", "WOOCOMMERCE_CONSUMER_KEY", "WOOCOMMERCE_CONSUMER_SECRET"),
}
# Set without an upstream, these name real servers the demo must never write to.
SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


def stack_commands(settings: Settings) -> dict[str, list[str]]:
    level = settings.log_level.lower()
    return {
        "worker": celery_argv("worker", "-Q", INCREMENTAL_QUEUE, "-n", "incremental@%h", "-l", level),
        "worker-full": celery_argv("worker", "-Q", FULL_QUEUE, "-n", "full@%h", "-l", level),
        "beat": celery_argv("beat", "-l", level),
    }


def supervise(supervisor: Supervisor, grace_seconds: float, sleep: float = POLL_SECONDS) -> int:
    """Run until a signal or a child's exit; then stop the rest warm, cold, and finally hard."""
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        supervisor.signal_all(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received and supervisor.first_exit() is None:
            time.sleep(sleep)
        if not received:
            # A child died on its own: the job is broken, stop the rest warm.
            supervisor.signal_all(signal.SIGTERM)
        if not supervisor.wait_all(grace_seconds):
            supervisor.signal_all(signal.SIGQUIT)
            if not supervisor.wait_all(COLD_AFTER_SECONDS):
                supervisor.stop_all(0.0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 0
    dead = supervisor.exit_code()
    return dead if dead > 0 else 1


def run_stack(settings: Settings) -> int:
    from worker.infra.db import upgrade_database

    upgrade_database(settings.database_url)
    click.echo(f"schema up to date; starting workers (queues {INCREMENTAL_QUEUE}, {FULL_QUEUE}) and beat")
    supervisor = Supervisor()
    # The children read their settings from the same environment this process was started with.
    for name, argv in stack_commands(settings).items():
        supervisor.start(name, argv, env=os.environ)
    grace = settings.celery_shutdown_escalate_seconds or settings.celery_task_soft_time_limit
    return supervise(supervisor, grace)


def demo_refusal(settings: Settings) -> str | None:
    """Why `run` without an upstream must not play the demo here, or None when it may."""
    servers = [name for name in SERVER_VARIABLES if name.lower() in settings.model_fields_set]
    if servers:
        return f"{', '.join(servers)} {'is' if len(servers) == 1 else 'are'} set"
    if not settings.demo_fallback:
        return "DEMO_FALLBACK is false (as the image sets it)"
    return None


def no_upstream_message(reason: str) -> str:
    lines = [
        f"syncworker run: no source is configured and {reason}, so refusing to start.",
        "Add sources with `syncworker sources add` or `syncworker sources apply FILE`, or set every",
        "variable of at least one upstream (in the environment or .env):",
        *(f"  {name}: {', '.join(names)}" for name, names in UPSTREAM_VARIABLES.items()),
        "For the demo (simulated upstreams, its own Redis and SQLite file), run `syncworker demo`.",
    ]
    return "\n".join(lines)


def stored_sources(ctx: click.Context, settings: Settings) -> int:
    """How many sources the ``sources`` table holds (0 without a database or the table).

    Their credentials must open with SOURCES_ENCRYPTION_KEYS: a deployment that lost its key fails here,
    at start-up, naming the variable, rather than in every task.
    """
    from worker.infra.db import make_engine, make_session_factory
    from worker.sources.catalog import all_sources
    from worker.sources.secrets import SourceKeyError

    if "database_url" not in settings.model_fields_set and not os.path.exists(_sqlite_path(settings)):
        return 0  # a fresh checkout: no database yet, so no stored source
    engine = make_engine(settings.database_url, connect_timeout=3)
    try:
        sources = all_sources(settings.model_copy(update={"odoo_url": None, "woocommerce_url": None}),
                              make_session_factory(engine))  # fmt: skip
    except SourceKeyError as exc:
        click.echo(f"syncworker run: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    except Exception:  # unreachable database: the refusal below names what is set
        return 0
    finally:
        engine.dispose()
    return len(sources)


def _sqlite_path(settings: Settings) -> str:
    url = settings.database_url
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url


def require_writable_spool(ctx: click.Context, settings: Settings) -> None:
    try:
        check_spool_writable(settings.event_spool_path)
    except SettingsError as exc:
        click.echo(str(exc), err=True)
        ctx.exit(EXIT_CONFIG)


@click.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """The main job: migrate, then the workers and beat for every configured source."""
    settings = cli_settings(ctx)
    if settings.odoo_enabled or settings.woocommerce_enabled or stored_sources(ctx, settings):
        require_writable_spool(ctx, settings)
        ctx.exit(run_stack(settings))
    reason = demo_refusal(settings)
    if reason is not None:
        click.echo(no_upstream_message(reason), err=True)
        ctx.exit(EXIT_CONFIG)
    click.echo(
        "syncworker run: nothing is configured (no upstream, database or Redis), so this is the DEMO:"
        " simulated upstreams, a private Redis and an SQLite file. Configure an upstream to run for"
        " real (see .env.example); `syncworker demo` plays the demo on purpose."
    )
    from worker.demo import run_demo

    ctx.exit(run_demo(workdir=DEFAULT_DEMO_DIR, once=False))
