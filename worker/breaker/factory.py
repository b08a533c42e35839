"""Build breakers from settings: one per upstream, sharing the fleet's Redis."""

from __future__ import annotations

import functools
from typing import Any

import redis

from worker.breaker.breaker import CircuitBreaker
from worker.breaker.listeners import (
    EventLogLike,
    EventLogListener,
    ListenerGroup,
    LoggingListener,
    MetricsListener,
)
from worker.breaker.local_redis import LocalRedis
from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import BreakerStats
from worker.breaker.store import BreakerStore, BudgetBinding
from worker.budget.policy import BudgetPolicy
from worker.infra.settings import BreakerSettings, Settings

BREAKER_NAMES = ("odoo", "woocommerce")


def breaker_redis(settings: Settings) -> redis.Redis:
    """A client that fails fast: short timeouts, no retries, no health-check round trips.

    A retrying client turns a dead Redis into seconds of stall per call; the breaker would rather
    fall back to its in-process state at once.
    """
    timeout = settings.breaker_redis_socket_timeout
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=None,
        retry_on_timeout=False,
        retry_on_error=[],
        health_check_interval=0,
        **_without_maintenance_notifications(),
    )
    return client


def _without_maintenance_notifications() -> dict[str, Any]:
    """Keep redis-py's check of each connection it hands out (is a reply still unread on it?).

    redis-py versions with ``maint_notifications`` skip that check while maintenance notifications
    are on, as they are by default; it is what stops a reply left unread by an interrupted call from
    answering the next one. The notifications serve managed clusters that move shards; the breaker
    degrades instead.
    """
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # older redis-py always checks
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def key_prefix(settings: Settings, name: str) -> str:
    """All keys of one breaker share the hash tag ``{name}``."""
    return f"{settings.redis_key_prefix}:breaker:{{{name}}}"


def breaker_settings(settings: Settings, name: str) -> BreakerSettings:
    """The fleet's policy for the breaker ``name`` (``<kind>`` or ``<kind>:<source>``)."""
    kind = name.split(":", 1)[0]
    if kind not in BREAKER_NAMES:
        msg = f"unknown breaker {name!r}; its kind is one of {', '.join(BREAKER_NAMES)}"
        raise ValueError(msg)
    bs: BreakerSettings = getattr(settings, f"{kind}_breaker")
    return bs


def build_breaker(
    name: str,
    settings: Settings,
    redis_client: redis.Redis | None,
    event_log: EventLogLike,
    policy: BreakerSettings | None = None,
    budget: tuple[str, BudgetPolicy] | None = None,
) -> CircuitBreaker:
    """The breaker ``name`` (``<kind>:<source>``), writing its transitions to the event log.

    ``policy`` is the source's (the kind's with its overrides); without one, the upstream's settings.
    ``budget`` is the source's host and its budget policy: its calls then draw on that host's
    request budget (none when the policy's ceiling is 0).
    """
    binding = None
    if budget is not None and budget[1].enabled:
        binding = BudgetBinding.for_host(budget[0], budget[1], settings.redis_key_prefix)
    return CircuitBreaker(
        name,
        redis_client,
        BreakerPolicy.from_settings(policy or breaker_settings(settings, name)),
        listener=ListenerGroup(EventLogListener(event_log), LoggingListener(), MetricsListener()),
        key_prefix=key_prefix(settings, name),
        retry_interval=settings.breaker_redis_retry_interval_seconds,
        budget=binding,
        degraded_share=settings.budget_degraded_share,
        local_host=process_local_redis(),
    )


@functools.cache
def process_local_redis() -> LocalRedis:
    """The keyspace every breaker of this process falls back to, so the sources on one host share
    one degraded budget here as they share the fleet's in Redis (a forked child keeps a copy)."""
    return LocalRedis()


def list_breakers(
    settings: Settings, redis_client: redis.Redis, policies: dict[str, BreakerSettings]
) -> list[BreakerStats]:
    """Stats of the named breakers (name -> its policy), read from the shared store.

    No in-process fallback here: an operator must see an error, not one process's local view.
    Raises ``redis.RedisError`` when Redis cannot be reached.
    """
    return [
        BreakerStore(
            name, redis_client, BreakerPolicy.from_settings(policy), key_prefix(settings, name)
        ).stats()
        for name, policy in policies.items()
    ]
