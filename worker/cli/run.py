"""`syncworker run`: the main job. Upstreams configured: migrate, then a worker (both queues) and beat.
None configured: the demo, with simulated upstreams.

The worker and beat are separate child processes. SIGINT/SIGTERM are forwarded to each child's main
pid only, so Celery shuts down warm (a signal to the whole process group would kill running tasks);
if one child exits on its own the other is stopped too and the exit status says so.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from worker.cli.output import cli_settings
from worker.demo.processes import Supervisor
from worker.settings import Settings

POLL_SECONDS = 0.5
# After the grace period a cold shutdown (SIGQUIT) still restores prefetched messages; SIGKILL would not.
COLD_AFTER_SECONDS = 10.0


def celery_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker", *args]


def stack_commands(settings: Settings) -> dict[str, list[str]]:
    level = settings.log_level.lower()
    return {
        "worker": celery_argv("worker", "-Q", "odoo,woocommerce", "-l", level),
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
    from worker.db import upgrade_database

    upgrade_database(settings.database_url)
    click.echo("schema up to date; starting worker (queues odoo, woocommerce) and beat")
    supervisor = Supervisor()
    # The children read their settings from the same environment this process was started with.
    for name, argv in stack_commands(settings).items():
        supervisor.start(name, argv, env=os.environ)
    grace = settings.celery_shutdown_escalate_seconds or settings.celery_task_soft_time_limit
    return supervise(supervisor, grace)


@click.command()
@click.option("--once", is_flag=True, help="Demo only: run the scenario, then stop everything and exit.")
@click.option(
    "--demo-dir",
    default=".demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Demo only: where its database, logs, pid list and env file go.",
)
@click.pass_context
def run(ctx: click.Context, once: bool, demo_dir: Path) -> None:
    """The main job: worker and beat for the configured upstreams, or the demo when none is configured."""
    settings = cli_settings(ctx)
    if settings.odoo_enabled or settings.woocommerce_enabled:
        ctx.exit(run_stack(settings))
    from worker.demo import run_demo

    ctx.exit(run_demo(settings, workdir=demo_dir, once=once))
