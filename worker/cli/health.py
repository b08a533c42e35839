"""`syncworker health`: can this deployment work right now? Usable as a container healthcheck.

Each check really calls its service with a short timeout and reports its latency. Exit status 1
when any check is DOWN, so an orchestrator restarts or withholds traffic; "skipped" (a part not
installed in this build) does not fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import click
import redis

from worker.cli.output import cli_settings, echo_json, json_option, redact_url, render_table, scrub
from worker.settings import Settings

Status = Literal["ok", "down", "skipped"]
SERVICE_TIMEOUT = 2.0
DB_CONNECT_TIMEOUT = 3


class Skipped(Exception):
    """This check does not apply to this build or configuration."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    latency_ms: float
    detail: str

    def line(self) -> str:
        return f"{self.name}: {self.status.upper()} ({self.detail})"


def check_database(settings: Settings) -> str:
    """Connect, run a query, and compare the schema revision with the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from worker.db import alembic_config, make_engine

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
        from worker.celery_app import create_app

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
        stats = list_breakers(settings, client)
    finally:
        client.close()
    if any(s.degraded for s in stats):
        msg = "breaker state unreadable from Redis"
        raise RuntimeError(msg)
    # An open breaker is an upstream's trouble, not this deployment's: reported, not failed.
    return ", ".join(f"{s.name}={s.state}" for s in stats)


CHECKS: dict[str, Callable[[Settings], str]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
    "workers": check_workers,
    "breakers": check_breakers,
}


def run_check(name: str, fn: Callable[[Settings], str], settings: Settings) -> CheckResult:
    started = time.perf_counter()
    status: Status = "ok"
    try:
        detail = fn(settings)
    except Skipped as exc:
        status, detail = "skipped", str(exc)
    except Exception as exc:
        status, detail = "down", " ".join(str(exc).split()) or type(exc).__name__
    latency = (time.perf_counter() - started) * 1000
    return CheckResult(name, status, round(latency, 1), scrub(detail, settings.secret_values()))


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
    """Check the database, Redis, the broker, live workers and breaker states; exit 1 if any is down."""
    settings = cli_settings(ctx)
    results = run_checks(settings, list(names) or list(CHECKS))
    healthy = all(r.status != "down" for r in results)
    if as_json:
        echo_json({"healthy": healthy, "checks": [asdict(r) for r in results]})
    else:
        rows = [(r.name, r.status.upper(), f"{r.latency_ms:.1f} ms", r.detail) for r in results]
        render_table("syncworker health", ["check", "status", "latency", "detail"], rows)
        for r in results:
            if r.status == "down":
                click.echo(r.line(), err=True)
    ctx.exit(0 if healthy else 1)
