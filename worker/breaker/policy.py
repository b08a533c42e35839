"""The breaker policy: its settings, and which outcomes count against an upstream.

The rules that use it are written once, in the Lua scripts of ``scripts/`` (run by Redis, or in
process by ``LocalRedis``); only what happens in the caller, the slow-call rule, is stated here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from worker.infra.errors import counts_as_breaker_failure
from worker.infra.settings import BreakerSettings


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

    def script_args(self) -> list[float | int]:
        """The policy in the order scripts/common.lua reads it (ARGV 1..10, its POLICY_ARGV)."""
        return [
            self.failure_threshold,
            self.failure_rate_threshold,
            self.window_seconds,
            self.minimum_calls,
            self.open_seconds,
            self.open_backoff_multiplier,
            self.open_max_seconds,
            self.half_open_max_calls,
            self.permit_timeout_seconds,
            self.success_threshold,
        ]


def is_slow(policy: BreakerPolicy, duration_seconds: float) -> bool:
    """A call that took this long counts as a failure even if it returned."""
    return duration_seconds >= policy.slow_call_seconds
