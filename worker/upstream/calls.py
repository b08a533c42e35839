"""The one place retry, breaker and failure recording are composed around a transport call."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

from worker.errors import CircuitOpenError, UpstreamError
from worker.upstream.failures import FailureRecorder
from worker.upstream.protocols import Breaker
from worker.upstream.retry import with_attempt_hook

T = TypeVar("T")


class GuardedCall:
    """``retrying(lambda: breaker.call(fn))``: tenacity outside, the breaker around each attempt."""

    def __init__(self, breaker: Breaker, retrying: tenacity.Retrying, recorder: FailureRecorder) -> None:
        self._breaker = breaker
        self._recorder = recorder
        self._retrying = with_attempt_hook(retrying, recorder.attempt_failed)

    def __call__(self, operation: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the retry policy; record and re-raise the final failure.

        Raises:
            CircuitOpenError: the breaker refused an attempt; no further attempt is made.
            UpstreamError: a fatal error, or the last retriable one once the policy gave up.
        """
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return self._breaker.call(fn)

        # A copy per call: concurrent page fetches must not share one loop's statistics.
        try:
            return self._retrying.copy()(attempt)
        except (UpstreamError, CircuitOpenError) as exc:
            self._recorder.record(exc, operation, attempts, final=True)
            raise
