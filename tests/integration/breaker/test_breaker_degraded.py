"""Redis going away and coming back, through a real socket that stops answering."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from breaker_fleet import RecordingEventLog
from breaker_tcp_proxy import TcpProxy

from worker.breaker import breaker_redis, build_breaker
from worker.breaker.state import BreakerState
from worker.infra.errors import CircuitOpenError, RetriableUpstreamError
from worker.infra.settings import BreakerSettings, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy(("127.0.0.1", 6379))
    p.start()
    yield p
    p.stop()


def fail() -> None:
    raise RetriableUpstreamError("503", status_code=503)


def test_closed_port_degrades_then_recovers(
    proxy: TcpProxy, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        redis_key_prefix=key_prefix,
        breaker_redis_socket_timeout=0.2,
        breaker_redis_retry_interval_seconds=0.5,
        odoo_breaker=BreakerSettings(failure_threshold=3, minimum_calls=1000, open_seconds=60),
    )
    log = RecordingEventLog()
    breaker = build_breaker("odoo", settings, breaker_redis(settings), log)
    attempts: list[str] = []
    evalsha = redis.Redis.evalsha

    def counting(self: redis.Redis, sha: str, *args: Any) -> Any:
        attempts.append(sha)  # every script run on Redis is an EVALSHA
        return evalsha(self, sha, *args)

    monkeypatch.setattr(redis.Redis, "evalsha", counting)

    assert breaker.call(lambda: "up") == "up"
    proxy.stop()  # Redis "dies": connections reset, the port refuses
    attempts.clear()
    results = []
    for _ in range(10):
        try:
            breaker.call(fail)
        except RetriableUpstreamError:
            results.append("reached")
        except CircuitOpenError:
            results.append("refused")
    # The caller never saw a Redis error; the local breaker, same policy, tripped after three.
    assert results == ["reached"] * 3 + ["refused"] * 7
    assert len(attempts) == 1  # no Redis call per guarded call while degraded
    stats = breaker.stats()
    assert (stats.degraded, stats.state) == (True, BreakerState.OPEN)
    assert "breaker.degraded" in log.types

    proxy.start()  # same port, Redis is back
    for _ in range(200):  # refused locally until the retry interval has passed
        try:
            assert breaker.call(lambda: "shared") == "shared"  # the shared state never opened
            break
        except CircuitOpenError:
            time.sleep(0.02)
    assert "breaker.recovered" in log.types
    shared = breaker.stats()
    assert (shared.degraded, shared.state, shared.total_failures) == (False, BreakerState.CLOSED, 0)


def test_connection_closed_while_idle_is_replaced_not_degraded(proxy: TcpProxy, key_prefix: str) -> None:
    """Pooled connections wait between calls; Redis may close one meanwhile (its idle timeout)."""
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        redis_key_prefix=key_prefix,
        breaker_redis_socket_timeout=0.5,
    )
    log = RecordingEventLog()
    breaker = build_breaker("odoo", settings, breaker_redis(settings), log)
    for _ in range(2):
        assert breaker.call(lambda: "up") == "up"
        proxy.drop_connections()
        time.sleep(0.2)  # the close reaches the client's socket before its next call
    breaker.flush()
    stats = breaker.stats()
    assert (stats.degraded, stats.total_successes) == (False, 2)
    assert "breaker.degraded" not in log.types


class InterruptedOnce(redis.Connection):
    """Raises once right after a command went out: its reply stays unread on the socket."""

    armed = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        super().send_packed_command(command, check_health)
        if InterruptedOnce.armed:
            InterruptedOnce.armed = False
            raise KeyboardInterrupt


def test_the_breakers_client_never_reads_a_reply_left_by_an_interrupt(key_prefix: str) -> None:
    # A pool hands out a connection only after checking it has nothing unread; redis-py skips that
    # check while maintenance notifications are on, so breaker_redis turns them off.
    client = breaker_redis(load_settings(redis_url="redis://127.0.0.1:6379/0"))
    client.connection_pool.connection_class = InterruptedOnce
    key = f"{key_prefix}:k"
    client.set(key, "first")
    InterruptedOnce.armed = True
    with pytest.raises(KeyboardInterrupt):
        client.get(key)  # Redis answered "first"; nobody read it
    client.set(key, "second")
    assert client.get(key) == b"second"
    client.close()
