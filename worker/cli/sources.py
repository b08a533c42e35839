"""`syncworker sources`: the shops and Odoo databases this fleet mirrors, kept in the ``sources`` table.

Credentials are read from ``env:``/``file:`` references, sealed with SOURCES_ENCRYPTION_KEYS and never
printed: `show` lists a credential's field name only. The schema is not upgraded here; a database
without the table gets told to run `syncworker db upgrade`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from worker.cli import source_options as opts
from worker.cli.health import CheckFailed, Finding, run_check
from worker.cli.output import EXIT_CONFIG, cli_settings, echo_json, json_option, redact_url, render_table
from worker.infra.db import make_engine, make_session_factory
from worker.infra.settings import Settings
from worker.kinds import REGISTRY
from worker.sources import store
from worker.sources.config import SourceConfig
from worker.sources.declarations import DeclarationError, dump_declarations, load_declarations
from worker.sources.secrets import CredentialCipher, SourceKeyError, generate_key

F = TypeVar("F", bound=Callable[..., Any])
LIST_COLUMNS = ("name", "kind", "url", "enabled", "interval (s)", "full cron")
SCHEDULE = ("incremental_interval_seconds", "full_cron")


def handled(fn: F) -> F:
    """Refusals become one clear line: a key problem exits 2 (configuration), any other 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SourceKeyError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_CONFIG) from None
        except (store.SourceStoreError, DeclarationError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def source_session(settings: Settings, *, commit: bool = True) -> Iterator[Session]:
    """A session in one transaction, committed at the end unless ``commit`` is False (a dry run)."""
    engine = make_engine(settings.database_url, connect_timeout=3)
    try:
        if not inspect(engine).has_table("sources"):
            msg = "the database has no sources table yet: run `syncworker db upgrade` first"
            raise click.ClickException(msg)
        with make_session_factory(engine)() as session:
            yield session
            if commit:
                session.commit()
    finally:
        engine.dispose()


def _cipher(settings: Settings) -> CredentialCipher:
    return CredentialCipher.from_settings(settings)


def _found(session: Session, name: str, cipher: CredentialCipher) -> SourceConfig:
    source = store.get(session, name, cipher)
    if source is None:
        msg = f"no configured source named {name!r}"
        raise click.ClickException(msg)
    return source


def public_view(source: SourceConfig) -> dict[str, Any]:
    """Everything about a source an operator may read: credentials only as "(set)"."""
    return {
        "name": source.name,
        "kind": source.kind,
        "url": redact_url(source.url),
        "enabled": source.enabled,
        "options": dict(source.options),
        "credentials": {field: "(set)" for field in sorted(source.credentials)},
        "schedule": {
            "incremental_interval_seconds": source.incremental_interval_seconds,
            "full_cron": source.full_cron,
        },
        "overrides": {
            "page_size": source.page_size,
            "concurrency": source.concurrency,
            "breaker": dict(source.breaker),
            "budget": dict(source.budget),
        },
    }


@click.group()
def sources() -> None:
    """The configured sources: WooCommerce shops and Odoo databases, with sealed credentials."""


@sources.command()
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(sorted(REGISTRY)), help="The kind of upstream.")
@opts.source_options
@click.option("--disabled", is_flag=True, help="Store it disabled: no runs are scheduled until enabled.")
@click.pass_context
@handled
def add(ctx: click.Context, name: str, kind: str, url: str | None, options: tuple[str, ...],
        credential_refs: tuple[str, ...], interval: float | None, full_cron: str | None,
        page_size: int | None, concurrency: int | None, breaker_items: tuple[str, ...],
        budget_items: tuple[str, ...], disabled: bool) -> None:  # fmt: skip
    """Add a source NAME (lower-case letters, digits, dashes)."""
    if url is None:
        raise click.BadParameter("is required", param_hint="--url")
    settings = cli_settings(ctx)
    fields = opts.given_fields(url, interval, full_cron, page_size, concurrency)
    source = store.build(
        {
            "name": name,
            "kind": kind,
            "options": opts.merged_options({}, options),
            "credentials": opts.credentials(credential_refs),
            "enabled": not disabled,
            "breaker": opts.overrides(breaker_items, "--breaker"),
            "budget": opts.overrides(budget_items, "--budget"),
            **fields,
        }
    )
    with source_session(settings) as session:
        store.add(session, source, _cipher(settings), allow_insecure_http=settings.allow_insecure_http)
    click.echo(f"added {kind} source {name} ({'disabled' if disabled else 'enabled'})")


@sources.command()
@click.argument("name")
@opts.source_options
@click.option("--enabled/--disabled", default=None, help="Enable or disable it as well.")
@click.pass_context
@handled
def edit(ctx: click.Context, name: str, url: str | None, options: tuple[str, ...],
         credential_refs: tuple[str, ...], interval: float | None, full_cron: str | None,
         page_size: int | None, concurrency: int | None, breaker_items: tuple[str, ...],
         budget_items: tuple[str, ...], enabled: bool | None) -> None:  # fmt: skip
    """Change what is given of source NAME; the rest stays. ``--option KEY=`` removes an option.

    The kind cannot change: a source's rows live in its kind's table. Remove it and add another.
    """
    settings = cli_settings(ctx)
    cipher = _cipher(settings)
    changes = opts.given_fields(url, interval, full_cron, page_size, concurrency)
    if credential_refs:
        changes["credentials"] = opts.credentials(credential_refs)
    if enabled is not None:
        changes["enabled"] = enabled
    with source_session(settings) as session:
        current = _found(session, name, cipher)
        if options:
            changes["options"] = opts.merged_options(current.options, options)
        if breaker_items:
            changes["breaker"] = {**current.breaker, **opts.overrides(breaker_items, "--breaker")}
        if budget_items:
            changes["budget"] = {**current.budget, **opts.overrides(budget_items, "--budget")}
        changed = store.update(
            session, name, changes, cipher, allow_insecure_http=settings.allow_insecure_http
        )
    click.echo(f"source {name} {'updated' if changed != current else 'unchanged'}")


@sources.command("list")
@json_option
@click.pass_context
@handled
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every configured source, by name (never its credentials)."""
    settings = cli_settings(ctx)
    with source_session(settings, commit=False) as session:
        views = [public_view(s) for s in store.list_all(session, _cipher(settings))]
    if as_json:
        echo_json([{k: v[k] for k in ("name", "kind", "url", "enabled", "schedule")} for v in views])
        return
    rows = [
        (v["name"], v["kind"], v["url"], v["enabled"], *(v["schedule"][f] or "default" for f in SCHEDULE))
        for v in views
    ]
    render_table("configured sources", LIST_COLUMNS, rows)


@sources.command()
@click.argument("name")
@json_option
@click.pass_context
@handled
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """All settings of source NAME; credentials as their field names only."""
    settings = cli_settings(ctx)
    with source_session(settings, commit=False) as session:
        view = public_view(_found(session, name, _cipher(settings)))
    if as_json:
        echo_json(view)
        return
    render_table(f"source {name}", ("field", "value"), list(view.items()))


def _set_enabled(ctx: click.Context, name: str, enabled: bool) -> None:
    with source_session(cli_settings(ctx)) as session:
        changed = store.set_enabled(session, name, enabled)
    state = "enabled" if enabled else "disabled"
    click.echo(f"source {name} {state}" if changed else f"source {name} was already {state}")


@sources.command()
@click.argument("name")
@click.pass_context
@handled
def enable(ctx: click.Context, name: str) -> None:
    """Schedule runs of source NAME again."""
    _set_enabled(ctx, name, True)


@sources.command()
@click.argument("name")
@click.pass_context
@handled
def disable(ctx: click.Context, name: str) -> None:
    """Stop scheduling runs of source NAME; its configuration and rows stay."""
    _set_enabled(ctx, name, False)


@sources.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@handled
def remove(ctx: click.Context, name: str, yes: bool) -> None:
    """Forget source NAME. Its mirrored rows, runs and events are kept."""
    if not yes:
        click.confirm(f"Remove source {name}? Its mirrored rows are kept.", abort=True)
    with source_session(cli_settings(ctx)) as session:
        store.remove(session, name)
    click.echo(f"source {name} removed")


def _probe(kind: Any) -> Callable[[Settings], Finding]:
    def check(settings: Settings) -> Finding:
        report = kind.probe(settings)
        if report.problem is not None:
            raise CheckFailed(report.problem, report.as_dict())
        return Finding(report.summary, report.as_dict())

    return check


def _yes_no(value: Any) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


@sources.command()
@click.argument("name")
@json_option
@click.pass_context
@handled
def test(ctx: click.Context, name: str, as_json: bool) -> None:
    """Probe source NAME like `syncworker health`: reachable, credentials accepted, version; 1 if not."""
    from worker.kinds import get_kind

    settings = cli_settings(ctx)
    with source_session(settings, commit=False) as session:
        source = _found(session, name, _cipher(settings))
    kind = get_kind(source.kind)
    result = run_check(name, _probe(kind), kind.configure(settings, source))
    facts = result.upstream or {}
    if as_json:
        echo_json(result.as_dict())
    else:
        click.echo(f"{name} ({kind.label}) at {facts.get('url', redact_url(source.url))}")
        click.echo(f"reachable: {_yes_no(facts.get('reachable'))}")
        click.echo(f"credentials accepted: {_yes_no(facts.get('authenticated'))}")
        click.echo(f"version: {facts.get('version') or 'unknown'}")
    if result.status == "down":
        click.echo(f"Error: {result.detail}", err=True)
        ctx.exit(1)


@sources.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prune", is_flag=True, help="Also remove the stored sources FILE does not declare.")
@click.option("--dry-run", is_flag=True, help="Report what would change, and change nothing.")
@json_option
@click.pass_context
@handled
def apply_command(ctx: click.Context, file: Path, prune: bool, dry_run: bool, as_json: bool) -> None:
    """Make the stored sources match the YAML FILE (env:/file: credentials resolved now)."""
    settings = cli_settings(ctx)
    declared = load_declarations(
        file.read_text(encoding="utf-8"),
        os.environ,
        base_dir=file.parent,
        allow_insecure_http=settings.allow_insecure_http,
    )
    with source_session(settings, commit=not dry_run) as session:
        report = store.apply(
            session,
            declared,
            _cipher(settings),
            prune=prune,
            allow_insecure_http=settings.allow_insecure_http,
        )
    if as_json:
        echo_json({**report.as_dict(), "dry_run": dry_run})
        return
    for label, names in report.as_dict().items():
        click.echo(f"{label}: {', '.join(names) or '-'}")
    if dry_run:
        click.echo("dry run: nothing was changed")


@sources.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@handled
def export_command(ctx: click.Context, file: Path | None) -> None:
    """Write the stored sources as YAML (to FILE, or standard output); credentials as env: references."""
    settings = cli_settings(ctx)
    with source_session(settings, commit=False) as session:
        text = dump_declarations(store.list_all(session, _cipher(settings)))
    if file is None:
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {file}", err=True)


@sources.command("rotate-keys")
@click.pass_context
@handled
def rotate_keys(ctx: click.Context) -> None:
    """Re-encrypt every source's credentials with the newest key of SOURCES_ENCRYPTION_KEYS."""
    settings = cli_settings(ctx)
    with source_session(settings) as session:
        count = store.rotate_all(session, _cipher(settings))
    click.echo(f"re-encrypted the credentials of {count} sources with the newest key")


@sources.command()
def keygen() -> None:
    """Print a new Fernet key: put it first in SOURCES_ENCRYPTION_KEYS, then run rotate-keys."""
    click.echo(generate_key())
