"""Real pieces for the sync engine's integration tests: simulators, clients, breaker, PostgreSQL, Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from worker.breaker import build_breaker
from worker.infra.db import make_session_factory
from worker.infra.eventlog import EventLog
from worker.infra.settings import Settings
from worker.kinds import get_kind
from worker.kinds.odoo.client import OdooClient
from worker.kinds.woocommerce.client import WooCommerceClient
from worker.sync import SyncDeps
from worker.upstream import build_retrying

BREAKER = {"failure_threshold": 2, "minimum_calls": 2, "open_seconds": 60.0}


@pytest.fixture
def real_settings(settings_factory: Any, migrated_pg_url: str, redis_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": migrated_pg_url,
            "redis_url": redis_url,
            "retry_max_attempts": 2,
            "retry_initial_backoff_seconds": 0.01,
            "woocommerce_breaker": BREAKER,
            "odoo_breaker": BREAKER,
            "sync_overlap_seconds": 120,
        }
        values.update(overrides)
        return settings_factory(**values)  # type: ignore[no-any-return]

    return make


def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
def woo_deps(clean_pg: Engine, redis_client: redis.Redis, real_settings: Callable[..., Settings]) -> Any:
    """``woo_deps(sim)``: a WooCommerce client for ``sim`` wired like the task does it."""

    def make(sim: Any, **overrides: Any) -> SyncDeps:
        settings = real_settings(
            woocommerce_url=sim.base_url,
            woocommerce_consumer_key=sim.consumer_key,
            woocommerce_consumer_secret=sim.consumer_secret,
            **overrides,
        )
        events = EventLog(clean_pg, redis_client, settings)
        breaker = build_breaker("woocommerce", settings, redis_client, events)
        client = WooCommerceClient(settings, breaker, events, build_retrying(settings, sleep=_no_sleep))
        kind = get_kind("woocommerce")
        return SyncDeps(settings, make_session_factory(clean_pg), redis_client, events, breaker, client, kind)

    return make


@pytest.fixture
def odoo_deps(clean_pg: Engine, redis_client: redis.Redis, real_settings: Callable[..., Settings]) -> Any:
    def make(sim: Any, **overrides: Any) -> SyncDeps:
        settings = real_settings(odoo_url=sim.base_url, odoo_db=sim.db, odoo_username=sim.login,
                                 odoo_api_key=sim.api_key, **overrides)  # fmt: skip
        events = EventLog(clean_pg, redis_client, settings)
        breaker = build_breaker("odoo", settings, redis_client, events)
        client = OdooClient(settings, breaker, events, build_retrying(settings, sleep=_no_sleep))
        kind = get_kind("odoo")
        return SyncDeps(settings, make_session_factory(clean_pg), redis_client, events, breaker, client, kind)

    return make
