"""The error taxonomy every layer matches on.

Errors are classified once, at the transport edge. The breaker, the retry policy and the event log
match on these types and never on raw status codes.
"""

from __future__ import annotations

from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded


class SyncWorkerError(Exception):
    """Base of every error raised on purpose by syncworker."""


class UpstreamError(SyncWorkerError):
    """A call to an upstream failed.

    ``request`` and ``response`` are short, already-redacted summaries that are safe to log.
    """

    def __init__(
        self,
        message: str,
        *,
        upstream: str = "",
        operation: str = "",
        status_code: int | None = None,
        request: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream
        self.operation = operation
        self.status_code = status_code
        self.request = request
        self.response = response


class RetriableUpstreamError(UpstreamError):
    """Connection errors, timeouts, 429 and 5xx: worth another attempt, and a breaker failure."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimited(RetriableUpstreamError):
    """A 429, or a 503 that says when to come back (``Retry-After``): the host asks us to slow down.

    With a request budget it is the budget's signal, not an outage: it lowers the host's rate for the
    whole fleet and counts against the breaker only once the budget is at its floor.
    """


class MalformedPayload(RetriableUpstreamError):
    """A body that is not the protocol's format: an HTML page served with 200, truncated JSON."""


class ResponseTooLarge(RetriableUpstreamError):
    """The body exceeded the configured maximum and was aborted while streaming."""


class FatalUpstreamError(UpstreamError):
    """Other 4xx and Odoo access or missing-model faults: retrying cannot help."""


class AuthenticationError(FatalUpstreamError):
    """The upstream refused our credentials."""


class CircuitOpenError(SyncWorkerError):
    """The breaker refused the call. Never a failure of the upstream, never retried."""

    def __init__(self, name: str, retry_after_seconds: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry after {retry_after_seconds:.1f}s")
        self.name = name
        self.retry_after_seconds = retry_after_seconds


class BudgetPaused(CircuitOpenError):
    """The host's request budget has no slot within the longest wait a call may sleep (a long
    ``Retry-After``): handled like an open breaker, so the run hands back and comes again later."""

    def __init__(self, host: str, retry_after_seconds: float) -> None:
        SyncWorkerError.__init__(
            self, f"request budget for {host!r} is paused; retry after {retry_after_seconds:.1f}s"
        )
        self.name = host
        self.retry_after_seconds = retry_after_seconds


class InvalidRecord(SyncWorkerError):
    """An upstream record failed validation; it is skipped and logged, the run continues."""


def counts_as_breaker_failure(exc: BaseException) -> bool:
    """Only errors that say the upstream is unhealthy trip a breaker; client errors do not."""
    return isinstance(exc, RetriableUpstreamError)


# Celery's time limits and a terminated task: the run was cut short, the upstream said nothing.
CANCELLATIONS: tuple[type[BaseException], ...] = (SoftTimeLimitExceeded, TimeLimitExceeded, Terminated)


def is_cancellation(exc: BaseException) -> bool:
    """An exception that ends a call without saying anything about the upstream's health."""
    return isinstance(exc, CANCELLATIONS)


class SyncRunFailed(SyncWorkerError):
    """A sync run ended ``failed``: the task fails with it, naming the source, run id and error."""
