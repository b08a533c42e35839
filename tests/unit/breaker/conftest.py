"""Fixtures for the breaker unit tests: a fake clock that also drives fakeredis's TIME."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from breaker_helpers import BreakerMaker, FakeClock
from fakeredis.commands_mixins import server_mixin

from worker.breaker import BreakerPolicy, CircuitBreaker


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


@pytest.fixture(params=["local", "fakeredis"])
def make_breaker(
    request: pytest.FixtureRequest, clock: FakeClock, server: fakeredis.FakeServer
) -> Iterator[BreakerMaker]:
    """Builds breakers on one backend; on fakeredis, breakers built twice share state (two workers)."""

    def make(listener: Any = None, **policy: Any) -> CircuitBreaker:
        client = fakeredis.FakeRedis(server=server) if request.param == "fakeredis" else None
        return CircuitBreaker("up", client, BreakerPolicy(**policy), listener=listener, clock=clock)

    yield make
