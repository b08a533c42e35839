"""The one place retry, breaker and failure recording are composed around a transport call."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from worker.infra import metrics
from worker.infra.errors import (
    AuthenticationError,
    CircuitOpenError,
    FatalUpstreamError,
    MalformedPayload,
    RateLimited,
    ResponseTooLarge,
    RetriableUpstreamError,
    UpstreamError,
)
from worker.infra.settings import Settings
from worker.upstream.failures import FailureRecorder
from worker.upstream.protocols import Breaker, EventSink
from worker.upstream.retry import build_retrying, with_attempt_hook

T = TypeVar("T")

# Refusals one attempt absorbs while a request budget paces the host: each one has already slowed the
# whole fleet, and a host still refusing at the budget's floor opens the breaker sooner than this.
ABSORBED_REFUSALS_PER_ATTEMPT = 20


class GuardedCall:
    """``retrying(lambda: breaker.call(fn))``: tenacity outside, the breaker around each attempt.

    When the breaker also admits through a request budget (``budget_host`` is set), a refusal
    (``RateLimited``) is the budget's signal, not a failed attempt: the budget has already lowered the
    host's rate (and paused it for a ``Retry-After``), so the call is sent again at once, in its new
    slot, without using up an attempt or sleeping a backoff on top of the budget's wait.
    """

    def __init__(self, breaker: Breaker, retrying: tenacity.Retrying, recorder: FailureRecorder) -> None:
        self._breaker = breaker
        self._recorder = recorder
        self._retrying = with_attempt_hook(retrying, recorder.attempt_failed)
        self._paced = getattr(breaker, "budget_host", None) is not None

    def __call__(self, operation: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the retry policy; record and re-raise the final failure.

        Raises:
            CircuitOpenError: the breaker refused an attempt; no further attempt is made.
            UpstreamError: a fatal error, or the last retriable one once the policy gave up.
        """
        attempts = 0

        def send() -> T:
            started = time.monotonic()
            outcome = "ok"
            try:
                return self._breaker.call(fn)
            except BaseException as exc:
                outcome = call_outcome(exc)
                raise
            finally:
                metrics.observe_upstream_call(
                    self._recorder.upstream, operation, outcome, time.monotonic() - started
                )

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            absorbed = 0
            while True:
                try:
                    return send()
                except RateLimited:
                    if not self._paced or absorbed >= ABSORBED_REFUSALS_PER_ATTEMPT:
                        raise
                    absorbed += 1

        # A copy per call: concurrent page fetches must not share one loop's statistics.
        try:
            return self._retrying.copy()(attempt)
        except (UpstreamError, CircuitOpenError) as exc:
            self._recorder.record(exc, operation, attempts, final=True)
            raise


class GuardedClient:
    """What every upstream client shares: failures recorded under the run's id, calls guarded once."""

    def _guard_calls(
        self,
        upstream: str,
        settings: Settings,
        breaker: Breaker,
        event_log: EventSink,
        retrying: tenacity.Retrying | None,
        *,
        base_url: str,
        correlation_id: str | None,
    ) -> None:
        self._recorder = FailureRecorder(
            upstream, event_log, breaker, settings, base_url=base_url, correlation_id=correlation_id
        )
        self._guarded = GuardedCall(breaker, retrying or build_retrying(settings), self._recorder)

    @property
    def correlation_id(self) -> str | None:
        """The run id written on failure rows; settable, since clients outlive one run."""
        return self._recorder.correlation_id

    @correlation_id.setter
    def correlation_id(self, value: str | None) -> None:
        self._recorder.correlation_id = value


# Most specific first: the label says why a call failed without a trip to the event log.
_OUTCOMES: tuple[tuple[type[BaseException], str], ...] = (
    (CircuitOpenError, "rejected"),
    (MalformedPayload, "malformed"),
    (RateLimited, "throttled"),
    (ResponseTooLarge, "too_large"),
    (RetriableUpstreamError, "retriable"),
    (AuthenticationError, "auth"),
    (FatalUpstreamError, "fatal"),
)


def call_outcome(exc: BaseException) -> str:
    """The metrics label for a failed attempt."""
    for kind, label in _OUTCOMES:
        if isinstance(exc, kind):
            return label
    return "error"
