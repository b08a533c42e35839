"""Building breakers from settings."""

from __future__ import annotations

import fakeredis
import pytest
from breaker_helpers import RecordingEventLog

from worker.breaker import breaker_redis, build_breaker, list_breakers
from worker.breaker.state import BreakerState
from worker.infra.errors import RetriableUpstreamError
from worker.infra.settings import BreakerSettings, load_settings


def test_build_breaker_uses_the_upstreams_policy_and_prefix() -> None:
    settings = load_settings(
        redis_key_prefix="sw-test", woocommerce_breaker=BreakerSettings(failure_threshold=1)
    )
    client = fakeredis.FakeRedis()
    log = RecordingEventLog()
    b = build_breaker("woocommerce", settings, client, log)
    with pytest.raises(RetriableUpstreamError):
        b.call(lambda: (_ for _ in ()).throw(RetriableUpstreamError("x")))
    assert b.state() == BreakerState.OPEN
    assert log.types == ["breaker.opened"]
    assert client.exists("sw-test:breaker:{woocommerce}:state")
    policies = {"odoo": settings.odoo_breaker, "woocommerce": settings.woocommerce_breaker}
    states = {s.name: s.state for s in list_breakers(settings, client, policies)}
    assert states == {"odoo": BreakerState.CLOSED, "woocommerce": BreakerState.OPEN}


def test_unknown_breaker_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown breaker"):
        build_breaker("nope", load_settings(), fakeredis.FakeRedis(), RecordingEventLog())


def test_breaker_redis_never_retries() -> None:
    client = breaker_redis(load_settings(breaker_redis_socket_timeout=0.1))
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.1, 0.1)
    assert kwargs["health_check_interval"] == 0
    assert client.connection_pool.get_connection().retry.get_retries() == 0
