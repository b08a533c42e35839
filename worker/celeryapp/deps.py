"""Per-process dependencies of the sync tasks, built on first use and cached.

Built lazily inside the process that runs the task: engines, sockets and Redis pools must never be
shared across the prefork ``fork()``, so the caches are dropped in every child.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker.breaker import breaker_redis, build_breaker
from worker.infra.db import make_engine, make_session_factory
from worker.infra.eventlog import EventLog
from worker.infra.redaction import forget_secrets, learn_secrets
from worker.infra.settings import Settings
from worker.infra.settings import get_settings as _load_settings
from worker.kinds import get_kind
from worker.sources.catalog import find_source, version_of
from worker.sources.checks import url_problems
from worker.sources.config import SourceConfig
from worker.sync import SyncDeps
from worker.upstream import build_retrying


def get_settings() -> Settings:
    return _load_settings()


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The general-purpose client: run locks, shutdown flags, delivery counters."""
    settings = get_settings()
    client: redis.Redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    return client


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.database_url, session_options=worker_session_options(settings))


def worker_session_options(settings: Settings) -> dict[str, str]:
    """PostgreSQL settings of the worker's sessions: a stalled or lost run must not hold locks for hours."""
    return {
        "idle_in_transaction_session_timeout": f"{settings.database_idle_in_transaction_timeout_seconds}s",
        # The server notices a client whose host is gone within about a minute instead of two hours.
        "tcp_keepalives_idle": "30",
        "tcp_keepalives_interval": "10",
        "tcp_keepalives_count": "3",
    }


@lru_cache(maxsize=1)
def get_session_factory() -> sessionmaker[Session]:
    return make_session_factory(get_engine())


@lru_cache(maxsize=1)
def get_event_log() -> EventLog:
    # Its own engine and Redis client with short timeouts: on SQLite the shared engine would wait
    # 30 s for the run's open write transaction before spooling the event.
    return EventLog.from_settings(get_settings())


@lru_cache(maxsize=1)
def get_breaker_redis() -> redis.Redis:
    """The fail-fast client every breaker of this process shares (one pool, however many sources)."""
    return breaker_redis(get_settings())


@dataclass(frozen=True)
class _Built:
    version: dt.datetime | None
    deps: SyncDeps
    secrets: tuple[str, ...]


class SourceDepsCache:
    """Per-source dependencies (client, HTTP pool, breaker), at most ``size`` sources at once.

    An entry is rebuilt when the source's row changed (one indexed read per run), so an edited URL,
    credential or policy reaches every worker without a restart; the least recently used source is
    dropped (its HTTP pool closed) past ``size``, so a worker's memory does not grow with the fleet.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, _Built] = OrderedDict()

    def get(self, name: str) -> SyncDeps:
        settings, session_factory = get_settings(), get_session_factory()
        with session_factory() as session:
            version = version_of(session, name)
        built = self._entries.get(name)
        if built is not None and built.version == version:
            self._entries.move_to_end(name)
            return built.deps
        source = find_source(settings, session_factory, name)
        deps = self._build(source)
        self._put(name, _Built(version, deps, tuple(source.secret_values())))
        return deps

    def _build(self, source: SourceConfig) -> SyncDeps:
        if not source.enabled:
            raise SourceDisabled(f"source {source.name!r} is disabled")
        insecure = url_problems(source.url, allow_insecure_http=get_settings().allow_insecure_http)
        if insecure:
            # A row written before the rule, or with ALLOW_INSECURE_HTTP set then: never send its secrets.
            raise SourceMisconfigured(f"source {source.name!r}: {insecure[0]}")
        learn_secrets(source.secret_values())
        kind = get_kind(source.kind)
        settings = kind.configure(get_settings(), source)
        event_log = get_event_log()
        try:
            policy = kind.breaker_policy(get_settings(), source)
            # Every source on one host draws on that host's budget, whichever worker runs it.
            budget = (kind.budget_host(source), kind.budget_policy(get_settings(), source))
        except ValueError as exc:  # an override that contradicts the fleet's settings
            raise SourceMisconfigured(f"source {source.name!r}: {exc}") from None
        breaker = build_breaker(
            kind.breaker_name(source.name), settings, get_breaker_redis(), event_log, policy, budget
        )
        client = kind.build_client(settings, breaker, event_log, build_retrying(settings))
        return SyncDeps(settings, get_session_factory(), get_redis(), event_log, breaker, client, kind)

    def _put(self, name: str, built: _Built) -> None:
        old = self._entries.pop(name, None)
        self._entries[name] = built
        evicted = [old] if old is not None else []
        while len(self._entries) > self.size:
            evicted.append(self._entries.popitem(last=False)[1])
        for entry in evicted:
            _close_client(entry.deps.client)
            # Only a source whose client is alive can put its credentials in a log line.
            forget_secrets(entry.secrets)

    def __len__(self) -> int:
        return len(self._entries)


class SourceDisabled(LookupError):
    """The source exists but is disabled: its requests are not run."""


class SourceMisconfigured(ValueError):
    """The source cannot be used as stored (its URL would expose its credentials)."""


def _close_client(client: Any) -> None:
    transport = getattr(client, "_transport", None)
    session = getattr(transport, "session", None)
    if session is not None:
        session.close()


@lru_cache(maxsize=1)
def _deps_cache() -> SourceDepsCache:
    return SourceDepsCache(get_settings().source_cache_size)


def get_deps(source: str) -> SyncDeps:
    """Everything ``run_sync`` needs for the source named ``source``: its settings, breaker and client."""
    return _deps_cache().get(str(source))


def reset() -> None:
    """Forget every cached dependency (between tests)."""
    for cached in (get_redis, get_engine, get_session_factory, get_event_log, get_breaker_redis, _deps_cache):
        cached.cache_clear()


def _reset_after_fork() -> None:
    if get_engine.cache_info().currsize:
        # close=False: the parent still owns those sockets; closing them here would break its sessions.
        get_engine().dispose(close=False)
    if get_event_log.cache_info().currsize:
        get_event_log().forget_connections_after_fork()
    reset()


os.register_at_fork(after_in_child=_reset_after_fork)
