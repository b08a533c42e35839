"""`syncworker breakers`: see the fleet's breakers and, as an operator, force or reset them.

Every manual command is one script on the shared Redis and is written to ``event_log`` with the
actor. If Redis cannot be reached the command fails loudly: an operator must never believe they
opened a breaker when only this process's local copy changed.
"""

from __future__ import annotations

import getpass
from typing import Any

import click
import redis

from worker.breaker import BreakerStats, breaker_redis, build_breaker, list_breakers
from worker.breaker.listeners import EventLogLike
from worker.cli.output import cli_settings, echo_json, json_option, render_table, utc_time
from worker.infra.settings import Settings
from worker.sources.catalog import fleet_breaker_policies

COLUMNS = ("breaker", "state", "fail run", "window", "rate", "rejected", "opened", "next attempt")


def open_redis(settings: Settings) -> redis.Redis:
    """The breaker's Redis client (a seam for tests)."""
    return breaker_redis(settings)


def open_event_log(settings: Settings) -> EventLogLike:
    """The event log that audits manual commands (a seam for tests)."""
    from worker.infra.eventlog import EventLog

    return EventLog.from_settings(settings)


def _row(s: BreakerStats) -> list[Any]:
    return [
        s.name,
        str(s.state),
        s.consecutive_failures,
        f"{s.window_failures}/{s.window_calls}",
        f"{s.failure_rate:.0%}",
        s.total_rejected,
        utc_time(s.opened_at),
        utc_time(s.next_attempt_at),
    ]


def _fail(exc: redis.RedisError) -> None:
    msg = f"breaker store unreachable ({type(exc).__name__}); nothing was changed"
    raise click.ClickException(msg)


@click.group()
def breakers() -> None:
    """The fleet-wide circuit breakers, one per source (``<kind>:<source>``)."""


@breakers.command("list")
@json_option
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every breaker's state and counters."""
    settings = cli_settings(ctx)
    try:
        stats = list_breakers(settings, open_redis(settings), fleet_breaker_policies(settings))
    except redis.RedisError as exc:
        _fail(exc)
        return
    if as_json:
        echo_json([s.as_dict() for s in stats])
    else:
        render_table("circuit breakers", COLUMNS, [_row(s) for s in stats])


@breakers.command("show")
@click.argument("name")
@json_option
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """All stats of one breaker."""
    settings = cli_settings(ctx)
    try:
        policies = _known(settings, name)
        stats = next(s for s in list_breakers(settings, open_redis(settings), policies) if s.name == name)
    except redis.RedisError as exc:
        _fail(exc)
        return
    data = stats.as_dict()
    if as_json:
        echo_json(data)
        return
    for key in ("last_failure_at", "last_success_at", "opened_at", "next_attempt_at"):
        data[key] = utc_time(data[key])
    render_table(f"breaker {name}", ("field", "value"), list(data.items()))


def _known(settings: Any, name: str) -> dict[str, Any]:
    """``name``'s policy; a name no configured source has is a usage error listing the known ones."""
    policies = fleet_breaker_policies(settings)
    if name not in policies:
        raise click.BadParameter(
            f"{name!r}; known: {', '.join(sorted(policies)) or 'none'}", param_hint="NAME"
        )
    return {name: policies[name]}


def _operate(ctx: click.Context, name: str, actor: str, op: str) -> None:
    settings = cli_settings(ctx)
    policy = _known(settings, name)[name]
    breaker = build_breaker(name, settings, open_redis(settings), open_event_log(settings), policy)
    try:
        tr = getattr(breaker, op)(actor)
    except redis.RedisError as exc:
        _fail(exc)
        return
    click.echo(f"{name}: {tr.old} -> {tr.new} (by {actor})")


def _actor_option(fn: Any) -> Any:
    return click.option(
        "--actor",
        default=getpass.getuser,
        show_default="current user",
        help="Who is doing this, for the audit trail.",
    )(fn)


@breakers.command("open")
@click.argument("name")
@_actor_option
@click.pass_context
def open_command(ctx: click.Context, name: str, actor: str) -> None:
    """Force a breaker open: every call fails fast until it is closed or reset."""
    _operate(ctx, name, actor, "force_open")


@breakers.command("close")
@click.argument("name")
@_actor_option
@click.pass_context
def close_command(ctx: click.Context, name: str, actor: str) -> None:
    """Force a breaker closed: calls always pass and failures never trip it, until reset."""
    _operate(ctx, name, actor, "force_close")


@breakers.command("reset")
@click.argument("name")
@_actor_option
@click.pass_context
def reset_command(ctx: click.Context, name: str, actor: str) -> None:
    """Back to CLOSED under the normal policy, with every counter cleared."""
    _operate(ctx, name, actor, "reset")
