"""The call sites feed the Prometheus metrics: breaker transitions, upstream attempts, stored events."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from worker.breaker.factory import build_breaker
from worker.infra import metrics
from worker.infra.errors import CircuitOpenError, MalformedPayload
from worker.upstream.calls import GuardedCall, call_outcome
from worker.upstream.failures import FailureRecorder
from worker.upstream.retry import build_retrying


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def record(self, event_type: str, **kwargs: Any) -> None:
        self.events.append((event_type, kwargs))


def sample(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


def test_a_trip_counts_one_transition(settings_factory: Any) -> None:
    settings = settings_factory(woocommerce_breaker={"failure_threshold": 2})
    breaker = build_breaker("woocommerce", settings, fakeredis.FakeRedis(), Recorder())
    before = sample(metrics.BREAKER_TRANSITIONS, "woocommerce", "closed", "open")

    def failing() -> None:
        raise MalformedPayload("html page", upstream="woocommerce")

    for _ in range(2):
        with pytest.raises(MalformedPayload):
            breaker.call(failing)
    assert sample(metrics.BREAKER_TRANSITIONS, "woocommerce", "closed", "open") == before + 1


@pytest.mark.parametrize(
    ("exc", "label"),
    [(CircuitOpenError("woocommerce", 3.0), "rejected"), (MalformedPayload("x"), "malformed")],
    ids=["breaker-open", "malformed"],
)
def test_outcome_labels(exc: BaseException, label: str) -> None:
    assert call_outcome(exc) == label


def test_every_attempt_is_observed(settings_factory: Any) -> None:
    settings = settings_factory()
    recorder = Recorder()
    breaker = build_breaker("woocommerce", settings, fakeredis.FakeRedis(), recorder)
    failures = FailureRecorder("woocommerce", recorder, breaker, settings, base_url="http://127.0.0.1:1")
    guarded = GuardedCall(breaker, build_retrying(settings, sleep=lambda _s: None), failures)
    attempts = iter([MalformedPayload("html page"), MalformedPayload("html page"), None])

    def flaky() -> str:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return "page"

    malformed = sample(metrics.UPSTREAM_CALLS, "woocommerce", "fetch_products", "malformed")
    ok = sample(metrics.UPSTREAM_CALLS, "woocommerce", "fetch_products", "ok")
    failed = sample(metrics.UPSTREAM_FAILURES, "woocommerce", "fetch_products")

    assert guarded("fetch_products", flaky) == "page"

    assert sample(metrics.UPSTREAM_CALLS, "woocommerce", "fetch_products", "malformed") == malformed + 2
    assert sample(metrics.UPSTREAM_CALLS, "woocommerce", "fetch_products", "ok") == ok + 1
    assert sample(metrics.UPSTREAM_FAILURES, "woocommerce", "fetch_products") == failed + 2
