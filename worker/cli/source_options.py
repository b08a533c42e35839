"""What `syncworker sources add` and `edit` share: their options, and turning them into source fields.

Credentials on the command line follow the YAML rule: ``field=env:VAR`` or ``field=file:PATH``,
resolved here and stored sealed, so a secret never sits in shell history or a process listing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import SecretStr

from worker.sources.declarations import CredentialReferenceError, resolve_reference

F = TypeVar("F", bound=Callable[..., Any])


def pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``("k=v", ...)`` as a dict; a value without ``=`` is refused naming the option."""
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"{option} takes FIELD=VALUE, got an item without '='"
            raise click.BadParameter(msg)
        result[key.strip()] = value.strip()
    return result


def scalar(value: str) -> int | float | str:
    """A breaker or budget override as the number it spells (its settings model validates it afterwards)."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def credentials(values: tuple[str, ...]) -> dict[str, SecretStr]:
    """``field=env:VAR|file:PATH`` items resolved against the environment and the working directory."""
    resolved = {}
    for field, ref in pairs(values, "--credential").items():
        try:
            resolved[field] = SecretStr(resolve_reference(ref, os.environ, Path.cwd()))
        except CredentialReferenceError as exc:
            msg = f"credential {field}: {exc}"
            raise click.BadParameter(msg, param_hint="--credential") from None
    return resolved


def source_options(fn: F) -> F:
    """The options add and edit take; every one optional here (add requires --url itself)."""
    options = [
        click.option("--url", help="Base URL of the shop or Odoo server."),
        click.option(
            "--option",
            "options",
            multiple=True,
            metavar="KEY=VALUE",
            help="A kind option (repeatable), e.g. auth=basic, db=prod, username=sync.",
        ),
        click.option(
            "--credential",
            "credential_refs",
            multiple=True,
            metavar="FIELD=env:VAR|file:PATH",
            help="A credential by reference (repeatable); never the value itself.",
        ),
        click.option(
            "--interval",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds between incremental runs (default: SYNC_INCREMENTAL_INTERVAL_SECONDS).",
        ),
        click.option("--full-cron", help="Cron (UTC) of the full run (default: SYNC_FULL_CRON)."),
        click.option("--page-size", type=click.IntRange(1, 5000), help="Records per page."),
        click.option("--concurrency", type=click.IntRange(1, 32), help="Pages fetched concurrently."),
        click.option(
            "--breaker",
            "breaker_items",
            multiple=True,
            metavar="FIELD=VALUE",
            help="A breaker setting of this source (repeatable), e.g. failure_threshold=3.",
        ),
        click.option(
            "--budget",
            "budget_items",
            multiple=True,
            metavar="FIELD=VALUE",
            help="A request budget setting of this source (repeatable), e.g. ceiling=10.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def given_fields(
    url: str | None,
    interval: float | None,
    full_cron: str | None,
    page_size: int | None,
    concurrency: int | None,
) -> dict[str, Any]:
    """The plain fields given on the command line (None means "not given", so it changes nothing)."""
    values = {
        "url": url,
        "incremental_interval_seconds": interval,
        "full_cron": full_cron,
        "page_size": page_size,
        "concurrency": concurrency,
    }
    return {k: v for k, v in values.items() if v is not None}


def overrides(items: tuple[str, ...], option: str) -> dict[str, int | float | str]:
    """``--breaker``/``--budget`` items as the override fields they set."""
    return {k: scalar(v) for k, v in pairs(items, option).items()}


def merged_options(current: dict[str, str], given: tuple[str, ...]) -> dict[str, str]:
    """``current`` with the given options set; ``KEY=`` (empty) removes one."""
    merged = {**current, **pairs(given, "--option")}
    return {k: v for k, v in merged.items() if v}
