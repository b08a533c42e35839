"""The fleet-wide circuit breaker: state in Redis, one Lua script per decision."""

from worker.breaker.breaker import CircuitBreaker
from worker.breaker.factory import breaker_redis, build_breaker, list_breakers
from worker.breaker.listeners import BreakerListener, EventLogLike, EventLogListener
from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import BreakerState, BreakerStats

__all__ = [
    "BreakerListener",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStats",
    "CircuitBreaker",
    "EventLogLike",
    "EventLogListener",
    "breaker_redis",
    "build_breaker",
    "list_breakers",
]
