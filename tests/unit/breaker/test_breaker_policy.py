"""The rules, as tables: the trip rule and the open period run in the Lua scripts (in process)."""

from __future__ import annotations

import math

import pytest

from worker.breaker.local_redis import LocalRedis
from worker.breaker.policy import BreakerPolicy, is_slow
from worker.breaker.state import NO_PENDING
from worker.breaker.store import BreakerStore
from worker.infra.errors import (
    AuthenticationError,
    FatalUpstreamError,
    MalformedPayload,
    RetriableUpstreamError,
)
from worker.infra.settings import BreakerSettings

POLICY = BreakerPolicy(failure_threshold=5, failure_rate_threshold=0.5, minimum_calls=10)
NOW = 1_700_000_000.0


def store_with(
    policy: BreakerPolicy, fields: dict[str, int], calls: int = 0, failures: int = 0
) -> BreakerStore:
    """A CLOSED breaker whose state hash also holds ``fields`` and whose current bucket the counts."""
    local = LocalRedis(clock=lambda: NOW)
    store = BreakerStore("t", local, policy, "t")
    bucket = math.floor(NOW / (policy.window_seconds / 20))
    local.eval(
        "redis.call('HSET', KEYS[1], unpack(ARGV, 3)) redis.call('HSET', KEYS[2], 'c' .. ARGV[1], ARGV[2])",
        2,
        *store.keys[:2],
        bucket,
        calls,
        *[part for item in {"state": "closed", **fields}.items() for part in item],
    )
    if failures:
        local.eval("redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])", 1, store.keys[1], f"f{bucket}", failures)
    return store


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
def test_trip_rule(consecutive: int, calls: int, failures: int, expected: str | None) -> None:
    # The counts are those after the failure being recorded, which the script adds.
    store = store_with(POLICY, {"fseq": consecutive - 1}, calls - 1, failures - 1)
    tr = store.record("fail", 0, None, "E", NO_PENDING)
    assert (tr.reason if tr else None) == expected


@pytest.mark.parametrize(("probes", "expected"), [(0, 30), (1, 60), (2, 120), (5, 600), (50, 600)])
def test_open_period_grows_to_the_maximum(probes: int, expected: float) -> None:
    policy = BreakerPolicy(
        failure_threshold=1, open_seconds=30, open_backoff_multiplier=2, open_max_seconds=600
    )
    tr = store_with(policy, {"fprobes": probes}).record("fail", 0, None, "E", NO_PENDING)
    assert tr is not None
    assert tr.stats.next_attempt_at is not None and tr.stats.opened_at is not None
    assert tr.stats.next_attempt_at - tr.stats.opened_at == expected


def test_open_period_is_never_shorter_than_open_seconds() -> None:
    policy = BreakerPolicy(failure_threshold=1, open_seconds=30, open_max_seconds=10)
    tr = store_with(policy, {}).record("fail", 0, None, "E", NO_PENDING)
    assert tr is not None and tr.stats.next_attempt_at == NOW + 30


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
    assert policy.script_args()[2] == policy.window_seconds == 60
