"""Retry policy: tenacity objects composed once, named by intent.

Only ``RetriableUpstreamError`` is retried. ``CircuitOpenError`` is not one, so an open breaker ends
the loop at once; fatal errors (other 4xx, auth) end it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import tenacity
from tenacity import (
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from worker.infra.errors import RetriableUpstreamError
from worker.infra.settings import Settings

AttemptHook = Callable[[RetryCallState], None]


class wait_retry_after(wait_base):
    """Wait what the upstream asked for (capped); otherwise defer to ``fallback``."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        asked = getattr(exc, "retry_after", None) if exc is not None else None
        if isinstance(asked, int | float) and asked >= 0:
            return min(float(asked), self.cap)
        return float(self.fallback(retry_state))


def retry_policy(settings: Settings) -> dict[str, Any]:
    """The policy's numbers, for the event log's metadata."""
    return {
        "max_attempts": settings.retry_max_attempts,
        "max_delay_seconds": settings.retry_max_delay_seconds,
        "initial_backoff_seconds": settings.retry_initial_backoff_seconds,
        "max_backoff_seconds": settings.retry_max_backoff_seconds,
        "retry_after_cap_seconds": settings.retry_after_cap_seconds,
    }


def build_retrying(
    settings: Settings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_attempt_failed: AttemptHook | None = None,
) -> tenacity.Retrying:
    """Exponential backoff with full jitter, ``Retry-After`` honoured, attempts and delay bounded.

    ``on_attempt_failed`` runs before each sleep, i.e. for every failed attempt that will be retried.
    """
    backoff = wait_random_exponential(
        multiplier=settings.retry_initial_backoff_seconds,
        max=settings.retry_max_backoff_seconds,
    )
    return tenacity.Retrying(
        # stop_before_delay counts the sleep about to happen, so a long Retry-After ends the loop
        # now instead of sleeping past the budget and then giving up.
        stop=stop_after_attempt(settings.retry_max_attempts)
        | stop_before_delay(settings.retry_max_delay_seconds),
        wait=wait_retry_after(backoff, settings.retry_after_cap_seconds),
        retry=retry_if_exception_type(RetriableUpstreamError),
        before_sleep=on_attempt_failed,
        sleep=sleep,
        reraise=True,
    )


def with_attempt_hook(retrying: tenacity.Retrying, hook: AttemptHook) -> tenacity.Retrying:
    """A copy of ``retrying`` that also calls ``hook`` for each failed attempt it retries."""
    previous = retrying.before_sleep

    def both(retry_state: RetryCallState) -> None:
        if previous is not None:
            previous(retry_state)
        hook(retry_state)

    return retrying.copy(before_sleep=both)
