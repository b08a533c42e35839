"""`syncworker demo`: simulated upstreams, a private Redis and an SQLite file, whatever is configured.

It reads no setting at all, so a DATABASE_URL, REDIS_URL or CELERY_BROKER_URL in the environment or
.env can never receive the demo's simulated rows, breaker keys or queued tasks.
"""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_DEMO_DIR = Path(".demo")


@click.command()
@click.option("--once", is_flag=True, help="Run the scenario, then stop everything and exit.")
@click.option(
    "--demo-dir",
    default=DEFAULT_DEMO_DIR,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where its database, Redis files, logs, pid list and env file go.",
)
@click.pass_context
def demo(ctx: click.Context, once: bool, demo_dir: Path) -> None:
    """The demo: two simulated shops and an Odoo database, declared as sources; one shop goes down, its
    breaker opens for the whole fleet while the other shop keeps syncing, then it recovers."""
    from worker.demo import run_demo

    ctx.exit(run_demo(workdir=demo_dir, once=once))
