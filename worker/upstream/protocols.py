"""The two collaborators the clients need, as structural types.

The breaker and the event log are built elsewhere; typing them as protocols keeps this package
importable and testable on its own, with in-process fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Breaker(Protocol):
    """What a client needs from ``worker.breaker.CircuitBreaker``."""

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def state(self) -> Any: ...


class EventSink(Protocol):
    """What a client needs from ``worker.infra.eventlog.EventLog``; ``record`` never raises."""

    def record(
        self,
        event_type: str,
        *,
        aggregate_id: str | None = None,
        correlation_id: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Any: ...
