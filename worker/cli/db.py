"""`syncworker db`: schema migrations through Alembic, the only way the schema changes."""

from __future__ import annotations

import click
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from worker.cli.output import cli_settings, echo_json, json_option, redact_url
from worker.infra.db import alembic_config, downgrade_database, make_engine, upgrade_database


def schema_revisions(database_url: str) -> tuple[str | None, str | None]:
    """(the database's current revision, the newest revision this code ships)."""
    engine = make_engine(database_url, connect_timeout=3)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    return current, head


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@click.argument("revision", default="head")
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Upgrade the schema to REVISION (default: head)."""
    url = cli_settings(ctx).database_url
    upgrade_database(url, revision)
    current, _ = schema_revisions(url)
    click.echo(f"{redact_url(url)}: schema at revision {current}")


@db.command()
@click.argument("revision")
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Downgrade the schema to REVISION (``base`` removes every table)."""
    url = cli_settings(ctx).database_url
    downgrade_database(url, revision)
    current, _ = schema_revisions(url)
    click.echo(f"{redact_url(url)}: schema at revision {current or 'base'}")


@db.command()
@json_option
@click.pass_context
def current(ctx: click.Context, as_json: bool) -> None:
    """Show the schema revision and whether it is the newest; exit 1 when behind."""
    url = cli_settings(ctx).database_url
    rev, head = schema_revisions(url)
    if as_json:
        echo_json({"database": redact_url(url), "current": rev, "head": head, "up_to_date": rev == head})
    else:
        state = "up to date" if rev == head else f"behind: run `syncworker db upgrade` to reach {head}"
        click.echo(f"{redact_url(url)}: revision {rev or 'base'} ({state})")
    ctx.exit(0 if rev == head else 1)
