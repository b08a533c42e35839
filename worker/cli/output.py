"""What every `syncworker` command shares: settings from the context, rich tables, JSON, redaction.

Read commands print a rich table for people and, with ``--json``, one JSON document (or JSON lines
when following) for scripts. Nothing printed here may carry a secret: URLs lose their passwords.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
from rich.console import Console
from rich.table import Table

from worker.infra.settings import Settings, SettingsError, load_settings

F = TypeVar("F", bound=Callable[..., Any])

# Exit status for a configuration the program cannot start with (as `syncworker run` documents).
EXIT_CONFIG = 2


@dataclass
class CliState:
    """Carried in ``click.Context.obj``; tests inject ready-made settings."""

    settings: Settings | None = None
    loader: Callable[[], Settings] = field(default=load_settings)


def cli_settings(ctx: click.Context) -> Settings:
    """The settings for this invocation, loaded once; a bad configuration exits with status 2."""
    state = ctx.find_object(CliState)
    if state is None:
        state = ctx.ensure_object(CliState)
    if state.settings is None:
        try:
            state.settings = state.loader()
        except SettingsError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(EXIT_CONFIG)
    assert state.settings is not None
    return state.settings


def json_option(fn: F) -> F:
    """The ``--json`` flag every read command takes."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def utc_time(epoch: float | None) -> dt.datetime | None:
    """A store's epoch seconds (Redis time) as an aware UTC datetime for tables and JSON."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch is not None else None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (user names stay: they help debugging)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable url>"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every configured secret in ``text`` (error messages can quote a URL)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    msg = f"not JSON serialisable: {type(value).__name__}"
    raise TypeError(msg)


def to_json(data: Any, *, indent: int | None = 2) -> str:
    return json.dumps(data, default=_default, indent=indent, sort_keys=False)


def echo_json(data: Any, *, lines: bool = False) -> None:
    """One pretty JSON document, or a compact line (for ``--follow`` streams)."""
    click.echo(to_json(data, indent=None if lines else 2))
    if lines:
        sys.stdout.flush()


def console() -> Console:
    # Width is fixed when not a terminal, so piped output and tests do not wrap at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list):
        return to_json(value, indent=None)
    return str(value)


def render_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    console().print(table)
