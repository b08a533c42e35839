"""Fixtures for the breaker unit tests: a fake clock that also drives fakeredis's TIME."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from fakeredis.commands_mixins import server_mixin

from worker.breaker import BreakerPolicy, CircuitBreaker
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
    """An in-memory stand-in for worker.eventlog.EventLog."""

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


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(server_mixin, "time", SimpleNamespace(time=fake))
    return fake


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


BreakerMaker = Callable[..., CircuitBreaker]


@pytest.fixture(params=["memory", "fakeredis"])
def make_breaker(
    request: pytest.FixtureRequest, clock: FakeClock, server: fakeredis.FakeServer
) -> Iterator[BreakerMaker]:
    """Builds breakers on one backend; on fakeredis, breakers built twice share state (two workers)."""

    def make(listener: Any = None, **policy: Any) -> CircuitBreaker:
        client = fakeredis.FakeRedis(server=server) if request.param == "fakeredis" else None
        return CircuitBreaker("up", client, BreakerPolicy(**policy), listener=listener, clock=clock)

    yield make
