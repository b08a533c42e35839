"""The pure rules, as tables."""

from __future__ import annotations

import pytest

from worker.breaker.policy import BreakerPolicy, is_slow, open_duration, should_trip
from worker.infra.errors import (
    AuthenticationError,
    FatalUpstreamError,
    MalformedPayload,
    RetriableUpstreamError,
)
from worker.infra.settings import BreakerSettings

POLICY = BreakerPolicy(failure_threshold=5, failure_rate_threshold=0.5, minimum_calls=10)


@pytest.mark.parametrize(
    ("consecutive", "calls", "failures", "expected"),
    [
        (4, 4, 4, None),
        (5, 5, 5, "consecutive_failures"),
        (1, 9, 8, None),
        (1, 10, 5, "failure_rate"),
        (1, 10, 4, None),
        (4, 20, 16, "failure_rate"),
    ],
    ids=["under-count", "count", "rate-under-minimum", "rate-at-threshold", "rate-under", "80pct"],
)
def test_should_trip(consecutive: int, calls: int, failures: int, expected: str | None) -> None:
    assert should_trip(POLICY, consecutive, calls, failures) == expected


@pytest.mark.parametrize(("probes", "expected"), [(0, 30), (1, 60), (2, 120), (5, 600), (50, 600)])
def test_open_duration_grows_to_the_maximum(probes: int, expected: float) -> None:
    policy = BreakerPolicy(open_seconds=30, open_backoff_multiplier=2, open_max_seconds=600)
    assert open_duration(policy, probes) == expected


def test_slow_call_threshold() -> None:
    policy = BreakerPolicy(slow_call_seconds=2)
    assert (is_slow(policy, 1.99), is_slow(policy, 2.0)) == (False, True)


@pytest.mark.parametrize(
    ("exc", "counts"),
    [
        (RetriableUpstreamError("503", status_code=503), True),
        (MalformedPayload("html"), True),
        (FatalUpstreamError("404", status_code=404), False),
        (AuthenticationError("401"), False),
        (ValueError("bug"), False),
    ],
    ids=["5xx", "malformed", "4xx", "auth", "other"],
)
def test_which_errors_count(exc: BaseException, counts: bool) -> None:
    assert BreakerPolicy().counts_as_failure(exc) is counts


def test_from_settings() -> None:
    policy = BreakerPolicy.from_settings(BreakerSettings(failure_threshold=7, open_seconds=3))
    assert (policy.failure_threshold, policy.open_seconds, policy.success_threshold) == (7, 3, 2)
    assert policy.bucket_seconds == 60 / 20
