"""`syncworker budgets`: the request budget of each upstream host and, as an operator, its ceiling.

The budget is shared by the whole fleet in Redis, so every command reads or writes it there and the
operator's commands are written to ``event_log`` with the actor. If Redis cannot be reached the command
fails loudly: an operator must never believe they slowed the fleet down when nothing changed.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

import click
import redis

from worker.budget import (
    BudgetStats,
    clear_ceiling,
    host_of,
    list_budgets,
    read_budget,
    reset_budget,
    set_ceiling,
)
from worker.budget.stats import known_hosts

# The breakers' seams: the same fail-fast Redis client, the same audited event log.
from worker.cli.breakers import open_event_log, open_redis
from worker.cli.output import cli_settings, echo_json, json_option, render_table, utc_time
from worker.infra.settings import Settings
from worker.sources.catalog import fleet_budget_ceilings

COLUMNS = ("host", "rate (req/s)", "ceiling", "configured", "paused until", "throttled", "cuts", "granted",
           "last refusal")  # fmt: skip


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _ceiling(s: BudgetStats) -> str:
    return _rate(s.ceiling) + (" (operator)" if s.operator_ceiling is not None else "")


def _paused(s: BudgetStats, now: float) -> bool:
    # The hash keeps the last pause's end after it passed.
    return s.paused_until is not None and s.paused_until > now


def _view(s: BudgetStats, configured: dict[str, float], now: float) -> dict[str, Any]:
    return {**s.as_dict(), "configured_ceiling": configured.get(s.host), "paused": _paused(s, now)}


def _row(s: BudgetStats, configured: dict[str, float], now: float) -> list[Any]:
    paused_until = utc_time(s.paused_until) if _paused(s, now) else None
    return [s.host, _rate(s.rate), _ceiling(s), _rate(configured.get(s.host)), paused_until,
            s.throttled, s.cuts, s.granted, utc_time(s.last_throttle_at)]  # fmt: skip


def _fail(exc: redis.RedisError) -> NoReturn:
    msg = f"budget store unreachable ({type(exc).__name__}); nothing was changed"
    raise click.ClickException(msg)


def _list(ctx: click.Context, as_json: bool) -> None:
    settings = cli_settings(ctx)
    configured = fleet_budget_ceilings(settings)
    client = open_redis(settings)
    try:
        stats = list_budgets(client, settings.redis_key_prefix, configured)
        seconds, micros = client.time()  # the clock the budget's pauses are set on
    except redis.RedisError as exc:
        _fail(exc)
    now = seconds + micros / 1e6
    if as_json:
        echo_json([_view(s, configured, now) for s in stats])
    else:
        render_table("request budgets per host", COLUMNS, [_row(s, configured, now) for s in stats])


@click.group(invoke_without_command=True)
@click.pass_context
def budgets(ctx: click.Context) -> None:
    """The fleet-wide request budget of each upstream host; without a command, `list`."""
    if ctx.invoked_subcommand is None:
        _list(ctx, as_json=False)


@budgets.command("list")
@json_option
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Every host with a budget: rate now, ceilings, pause, refusals and cuts."""
    _list(ctx, as_json)


def _host(value: str) -> str:
    """The host as `list` shows it (``host`` or ``host:port``); a whole URL is accepted too."""
    return host_of(value) if "://" in value else value.strip().lower()


def _known_host(settings: Settings, client: redis.Redis, given: str) -> str:
    """``given`` as a budget's host; one no source calls and Redis does not know is a usage error."""
    try:
        host = _host(given)
    except ValueError:
        raise click.BadParameter(f"{given!r} has no host name", param_hint="HOST") from None
    known = set(fleet_budget_ceilings(settings)) | set(known_hosts(client, settings.redis_key_prefix))
    if host not in known:
        raise click.BadParameter(f"{host!r}; known: {', '.join(sorted(known)) or 'none'}", param_hint="HOST")
    return host


Change = Callable[[redis.Redis, str, str], None]  # (client, key prefix, host)


def _operate(ctx: click.Context, given: str, actor: str, event: str, change: Change, **details: Any) -> str:
    """Apply ``change`` to the host's budget in Redis, then audit it as ``event``; returns the host.

    The event keeps the budget as it was before, so an operator's reset loses nothing from the record.
    """
    settings = cli_settings(ctx)
    prefix = settings.redis_key_prefix
    client = open_redis(settings)
    try:
        host = _known_host(settings, client, given)
        before = read_budget(client, prefix, host)
        change(client, prefix, host)
    except redis.RedisError as exc:
        _fail(exc)
    open_event_log(settings).record(
        event,
        aggregate_id=host,
        payload={"host": host, "reason": "operator", **details, "before": before.as_dict()},
        metadata={"actor": actor},
    )
    return host


def _actor_option(fn: Any) -> Any:
    return click.option(
        "--actor",
        default=getpass.getuser,
        show_default="current user",
        help="Who is doing this, for the audit trail.",
    )(fn)


@budgets.command("set")
@click.argument("host")
@click.argument("ceiling", type=click.FloatRange(min=0, min_open=True))
@_actor_option
@click.pass_context
def set_command(ctx: click.Context, host: str, ceiling: float, actor: str) -> None:
    """Set the ceiling of HOST to CEILING requests per second, fleet-wide, in place of the configured one."""
    change = partial(set_ceiling, ceiling=ceiling)
    done = _operate(ctx, host, actor, "budget.ceiling_set", change, ceiling=ceiling)
    click.echo(f"{done}: ceiling {ceiling:g} requests/s fleet-wide (by {actor})")


@budgets.command("clear")
@click.argument("host")
@_actor_option
@click.pass_context
def clear_command(ctx: click.Context, host: str, actor: str) -> None:
    """Remove the operator's ceiling of HOST: the configured one applies again."""
    done = _operate(ctx, host, actor, "budget.ceiling_cleared", clear_ceiling)
    click.echo(f"{done}: operator's ceiling removed, the configured one applies (by {actor})")


@budgets.command("reset")
@click.argument("host")
@_actor_option
@click.pass_context
def reset_command(ctx: click.Context, host: str, actor: str) -> None:
    """Forget what HOST taught the fleet: learned rate, pause and counters (an operator's ceiling stays)."""
    done = _operate(ctx, host, actor, "budget.reset", reset_budget)
    click.echo(f"{done}: learned rate, pause and counters forgotten (by {actor})")
