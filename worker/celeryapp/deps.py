"""Per-process dependencies of the sync tasks, built on first use and cached.

Built lazily inside the process that runs the task: engines, sockets and Redis pools must never be
shared across the prefork ``fork()``, so the caches are dropped in every child.
"""

from __future__ import annotations

import os
from functools import lru_cache

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker.breaker import breaker_redis, build_breaker
from worker.infra.db import make_engine, make_session_factory
from worker.infra.eventlog import EventLog
from worker.infra.settings import Settings
from worker.infra.settings import get_settings as _load_settings
from worker.kinds.odoo.client import OdooClient
from worker.kinds.woocommerce.client import WooCommerceClient
from worker.sync import SyncDeps, SyncSource
from worker.upstream import build_retrying

# Which breaker guards which source.
BREAKER_FOR = {SyncSource.ODOO_SUPPLIERS: "odoo", SyncSource.WOOCOMMERCE_PRODUCTS: "woocommerce"}


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


@lru_cache(maxsize=2)
def get_deps(source: SyncSource) -> SyncDeps:
    """Everything ``run_sync`` needs for ``source``: settings -> breaker -> retry -> client."""
    settings = get_settings()
    event_log = get_event_log()
    name = BREAKER_FOR[source]
    breaker = build_breaker(name, settings, breaker_redis(settings), event_log)
    retrying = build_retrying(settings)
    client: OdooClient | WooCommerceClient
    if source is SyncSource.ODOO_SUPPLIERS:
        client = OdooClient(settings, breaker, event_log, retrying)
    else:
        client = WooCommerceClient(settings, breaker, event_log, retrying)
    return SyncDeps(settings, get_session_factory(), get_redis(), event_log, breaker, client)


def reset() -> None:
    """Forget every cached dependency (between tests)."""
    for cached in (get_redis, get_engine, get_session_factory, get_event_log, get_deps):
        cached.cache_clear()


def _reset_after_fork() -> None:
    if get_engine.cache_info().currsize:
        # close=False: the parent still owns those sockets; closing them here would break its sessions.
        get_engine().dispose(close=False)
    if get_event_log.cache_info().currsize:
        get_event_log().forget_connections_after_fork()
    reset()


os.register_at_fork(after_in_child=_reset_after_fork)
