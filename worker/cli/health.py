"""`syncworker health`: can this deployment work right now? Usable as a container healthcheck.

Each check really calls its service with a short timeout and reports its latency. Exit status 1
when any check is DOWN, so an orchestrator restarts or withholds traffic; "skipped" (a part not
installed in this build, an upstream not configured) does not fail. The upstream checks only probe:
they bypass the breaker and its retries, so they never move a breaker or write to event_log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import click
import redis

from worker.cli.output import cli_settings, echo_json, json_option, redact_url, render_table, scrub
from worker.infra.settings import Settings

if TYPE_CHECKING:
    from worker.upstream.probe import ProbeReport

Status = Literal["ok", "down", "skipped"]
SERVICE_TIMEOUT = 2.0
DB_CONNECT_TIMEOUT = 3


class Skipped(Exception):
    """This check does not apply to this build or configuration."""


@dataclass(frozen=True)
class Finding:
    """A check's detail line plus facts that scripts read from ``--json``."""

    detail: str
    facts: dict[str, Any]


class CheckFailed(RuntimeError):
    """The check is down; its facts still go to ``--json``."""

    def __init__(self, detail: str, facts: dict[str, Any]) -> None:
        super().__init__(detail)
        self.facts = facts


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    latency_ms: float
    detail: str
    # What an upstream probe found (reachable, authenticated, version); None for the other checks.
    upstream: dict[str, Any] | None = None

    def line(self) -> str:
        return f"{self.name}: {self.status.upper()} ({self.detail})"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.upstream is None:
            del data["upstream"]
        return data


def check_database(settings: Settings) -> str:
    """Connect, run a query, and compare the schema revision with the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from worker.infra.db import alembic_config, make_engine

    engine = make_engine(settings.database_url, connect_timeout=DB_CONNECT_TIMEOUT)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    where = redact_url(settings.database_url)
    if current != head:
        msg = f"schema at revision {current or 'none'}, code expects {head}: run `syncworker db upgrade`"
        raise RuntimeError(msg)
    return f"{where} at revision {current}"


def _ping(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=SERVICE_TIMEOUT, socket_connect_timeout=SERVICE_TIMEOUT)
    try:
        info = client.info("server")
        return f"{redact_url(url)} (redis {info.get('redis_version', '?')})"
    finally:
        client.close()


def check_redis(settings: Settings) -> str:
    return _ping(settings.redis_url)


def check_broker(settings: Settings) -> str:
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        return _ping(settings.broker_url)
    from kombu.connection import Connection

    with Connection(settings.broker_url, connect_timeout=SERVICE_TIMEOUT) as conn:  # type: ignore[no-untyped-call]
        conn.ensure_connection(max_retries=1)
    return redact_url(settings.broker_url)


def _celery_app(settings: Settings) -> Any:
    # Built from the settings given, never the process-wide app: health must ask *this* broker.
    try:
        from worker.celeryapp.app import create_app

        return create_app(settings)
    except ImportError:
        # Without the app module, a bare app on the same broker still reaches the workers' pidbox.
        from celery import Celery

        return Celery("syncworker-health", broker=settings.broker_url)


def check_workers(settings: Settings) -> str:
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        _ping(settings.broker_url)  # fail in one short timeout; kombu would retry for seconds
    replies = _celery_app(settings).control.inspect(timeout=1.0).ping() or {}
    if not replies:
        msg = "no worker answered a ping within 1s"
        raise RuntimeError(msg)
    return f"{len(replies)} answering: {', '.join(sorted(replies))}"


def check_breakers(settings: Settings) -> str:
    try:
        from worker.breaker import list_breakers
    except ImportError as exc:
        raise Skipped("breaker module not installed") from exc
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=SERVICE_TIMEOUT, socket_connect_timeout=SERVICE_TIMEOUT
    )
    try:
        from worker.sources.catalog import fleet_breaker_policies

        stats = list_breakers(settings, client, fleet_breaker_policies(settings))
    finally:
        client.close()
    if any(s.degraded for s in stats):
        msg = "breaker state unreadable from Redis"
        raise RuntimeError(msg)
    # An open breaker is an upstream's trouble, not this deployment's: reported, not failed.
    return ", ".join(f"{s.name}={s.state}" for s in stats)


def _probed(report: ProbeReport) -> Finding:
    if report.problem is not None:
        raise CheckFailed(report.problem, report.as_dict())
    return Finding(report.summary, report.as_dict())


SOURCES_HINT = "probe a stored source with `syncworker sources test NAME`"


def check_odoo(settings: Settings) -> Finding:
    if not settings.odoo_enabled:
        raise Skipped(f"not configured by ODOO_URL ({SOURCES_HINT})")
    from worker.kinds.odoo.probe import probe_odoo

    return _probed(probe_odoo(settings))


def check_woocommerce(settings: Settings) -> Finding:
    if not settings.woocommerce_enabled:
        raise Skipped(f"not configured by WOOCOMMERCE_URL ({SOURCES_HINT})")
    from worker.kinds.woocommerce.probe import probe_woocommerce

    return _probed(probe_woocommerce(settings))


CHECKS: dict[str, Callable[[Settings], str | Finding]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "workers": check_workers,
    "breakers": check_breakers,
    "odoo": check_odoo,
    "woocommerce": check_woocommerce,
}


def run_check(name: str, fn: Callable[[Settings], str | Finding], settings: Settings) -> CheckResult:
    started = time.perf_counter()
    status: Status = "ok"
    facts: dict[str, Any] | None = None
    try:
        outcome = fn(settings)
        detail, facts = (outcome.detail, outcome.facts) if isinstance(outcome, Finding) else (outcome, None)
    except Skipped as exc:
        status, detail = "skipped", str(exc)
    except CheckFailed as exc:
        status, detail, facts = "down", str(exc), exc.facts
    except Exception as exc:
        status, detail = "down", " ".join(str(exc).split()) or type(exc).__name__
    latency = (time.perf_counter() - started) * 1000
    secrets = settings.secret_values()
    return CheckResult(name, status, round(latency, 1), scrub(detail, secrets), _scrub_facts(facts, secrets))


def _scrub_facts(facts: dict[str, Any] | None, secrets: list[str]) -> dict[str, Any] | None:
    if facts is None:
        return None
    return {k: scrub(v, secrets) if isinstance(v, str) else v for k, v in facts.items()}


def run_checks(settings: Settings, names: list[str]) -> list[CheckResult]:
    return [run_check(name, CHECKS[name], settings) for name in names]


@click.command()
@click.option(
    "--check",
    "names",
    multiple=True,
    type=click.Choice(list(CHECKS)),
    help="Run only these checks (repeatable); default: all.",
)
@json_option
@click.pass_context
def health(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Check the database, Redis, the broker, live workers, breakers and upstreams; exit 1 if any is down."""
    settings = cli_settings(ctx)
    results = run_checks(settings, list(names) or list(CHECKS))
    healthy = all(r.status != "down" for r in results)
    if as_json:
        echo_json({"healthy": healthy, "checks": [r.as_dict() for r in results]})
    else:
        rows = [(r.name, r.status.upper(), f"{r.latency_ms:.1f} ms", r.detail) for r in results]
        render_table("syncworker health", ["check", "status", "latency", "detail"], rows)
        for r in results:
            if r.status == "down":
                click.echo(r.line(), err=True)
    ctx.exit(0 if healthy else 1)
