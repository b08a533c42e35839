"""Test doubles for the breaker tests: a settable clock and recorders for listeners and events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis

from worker.breaker import CircuitBreaker
from worker.breaker.state import BreakerState


class FakeClock:
    """Seconds since an arbitrary epoch; only ``advance`` moves it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingListener:
    """Keeps every notification, as the event log would."""

    def __init__(self) -> None:
        self.transitions: list[tuple[str, BreakerState, BreakerState, str, dict[str, Any]]] = []
        self.store_changes: list[tuple[str, bool, str]] = []

    def on_transition(
        self, name: str, old: BreakerState, new: BreakerState, reason: str, stats: dict[str, Any]
    ) -> None:
        self.transitions.append((name, old, new, reason, stats))

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None:
        self.store_changes.append((name, degraded, detail))

    @property
    def moves(self) -> list[tuple[str, str]]:
        return [(str(old), str(new)) for _, old, new, _, _ in self.transitions]


class RecordingEventLog:
    """An in-memory stand-in for worker.infra.eventlog.EventLog."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(
        self,
        event_type: str,
        *,
        aggregate_id: str | None = None,
        correlation_id: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(
            {"type": event_type, "aggregate_id": aggregate_id, "payload": payload, "metadata": metadata}
        )

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


BreakerMaker = Callable[..., CircuitBreaker]


class RoundTrips:
    """A fakeredis client whose connections count what they send: one write per round trip."""

    def __init__(self, server: fakeredis.FakeServer) -> None:
        self.count = 0
        trips = self

        class Counting(fakeredis.FakeRedisConnection):
            def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                trips.count += 1
                super().send_packed_command(command, check_health)

        self.client = fakeredis.FakeRedis(server=server, connection_class=Counting)


def unreachable_redis() -> fakeredis.FakeRedis:
    """A client whose server is down: connecting fails as with a closed port."""
    server = fakeredis.FakeServer()
    server.connected = False
    return fakeredis.FakeRedis(server=server)
