"""The breaker policy and the pure decisions made from it.

The Lua scripts in ``scripts/`` and the in-process store implement the same rules; the functions here
are the readable statement of them, used by the in-process store and by table tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from worker.infra.errors import counts_as_breaker_failure
from worker.infra.settings import BreakerSettings

# The sliding window is kept as this many buckets, so its memory is bounded whatever the call rate;
# the window's edge is accurate to window_seconds / WINDOW_BUCKETS.
WINDOW_BUCKETS = 20


@dataclass(frozen=True)
class BreakerPolicy:
    """When to trip, how long to stay open, how to probe and close."""

    failure_threshold: int = 5
    failure_rate_threshold: float = 0.5
    window_seconds: float = 60.0
    minimum_calls: int = 10
    slow_call_seconds: float = 30.0
    open_seconds: float = 30.0
    open_backoff_multiplier: float = 2.0
    open_max_seconds: float = 600.0
    half_open_max_calls: int = 1
    permit_timeout_seconds: float = 120.0
    success_threshold: int = 2
    counts_as_failure: Callable[[BaseException], bool] = field(
        default=counts_as_breaker_failure, compare=False
    )

    @classmethod
    def from_settings(
        cls,
        settings: BreakerSettings,
        counts_as_failure: Callable[[BaseException], bool] = counts_as_breaker_failure,
    ) -> BreakerPolicy:
        """One upstream's policy from its ``<UPSTREAM>_BREAKER__*`` settings."""
        return cls(**settings.model_dump(), counts_as_failure=counts_as_failure)

    @property
    def bucket_seconds(self) -> float:
        return self.window_seconds / WINDOW_BUCKETS

    def script_args(self) -> list[float | int]:
        """The policy in the order scripts/common.lua reads it (ARGV 1..10)."""
        return [
            self.failure_threshold,
            self.failure_rate_threshold,
            self.bucket_seconds,
            self.minimum_calls,
            self.open_seconds,
            self.open_backoff_multiplier,
            self.open_max_seconds,
            self.half_open_max_calls,
            self.permit_timeout_seconds,
            self.success_threshold,
        ]


def should_trip(
    policy: BreakerPolicy, consecutive_failures: int, window_calls: int, window_failures: int
) -> str | None:
    """The rule that trips a CLOSED breaker after a failure, or None."""
    if consecutive_failures >= policy.failure_threshold:
        return "consecutive_failures"
    if window_calls >= policy.minimum_calls and (
        window_failures >= policy.failure_rate_threshold * window_calls
    ):
        return "failure_rate"
    return None


def open_duration(policy: BreakerPolicy, failed_probes: int) -> float:
    """How long to stay OPEN: grows by the multiplier after each failed probe, up to the maximum."""
    grown = policy.open_seconds * policy.open_backoff_multiplier**failed_probes
    return min(grown, max(policy.open_max_seconds, policy.open_seconds))


def is_slow(policy: BreakerPolicy, duration_seconds: float) -> bool:
    """A call that took this long counts as a failure even if it returned."""
    return duration_seconds >= policy.slow_call_seconds
