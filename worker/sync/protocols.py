"""What the engine needs from its collaborators, as structural types (in-process fakes satisfy them)."""

from __future__ import annotations

from typing import Any, Protocol

from worker.upstream.protocols import EventSink

__all__ = ["BreakerStatsSource", "EventSink"]


class BreakerStatsSource(Protocol):
    """The breaker's ``stats()``; its result has ``next_attempt_at`` while the circuit is open."""

    def stats(self) -> Any: ...
