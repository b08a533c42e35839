"""Writing failed upstream attempts to the event log.

One row per failed attempt that will be retried (``final=False``) and one per call that gave up
(``final=True``), as ``<upstream>.sync.failed.<operation>``. Everything passed is a summary built by
``summary.py``; the event log redacts again, but nothing secret is handed to it in the first place.
"""

from __future__ import annotations

from typing import Any

from tenacity import RetryCallState

from worker.infra.errors import CircuitOpenError, UpstreamError
from worker.infra.settings import Settings
from worker.upstream.protocols import Breaker, EventSink
from worker.upstream.retry import retry_policy
from worker.upstream.summary import redact_url, scrub_text, truncate

MESSAGE_CHARS = 500


class FailureRecorder:
    """Records failures of one upstream's calls, with the breaker state at the time."""

    def __init__(
        self,
        upstream: str,
        event_log: EventSink,
        breaker: Breaker,
        settings: Settings,
        *,
        base_url: str,
        correlation_id: str | None = None,
    ) -> None:
        self.upstream = upstream
        self._event_log = event_log
        self._breaker = breaker
        self.correlation_id = correlation_id
        self._metadata = {
            "base_url": redact_url(base_url),
            "timeouts": [settings.http_connect_timeout, settings.http_read_timeout],
            "retry_policy": retry_policy(settings),
        }

    def attempt_failed(self, retry_state: RetryCallState) -> None:
        """tenacity ``before_sleep`` hook: the attempt failed and another will follow."""
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, UpstreamError):
            self.record(exc, exc.operation, retry_state.attempt_number, final=False)

    def record(self, exc: BaseException, operation: str, attempt: int, *, final: bool) -> None:
        """Write one failure row; never raises."""
        self._event_log.record(
            f"{self.upstream}.sync.failed.{operation}",
            # The breaker the call counts against, ``<kind>:<source>``: it names the source even between runs.
            aggregate_id=getattr(self._breaker, "name", None),
            correlation_id=self.correlation_id,
            payload=failure_payload(exc, attempt, final, self._breaker_state()),
            metadata=dict(self._metadata),
        )

    def _breaker_state(self) -> str | None:
        # The state lives in Redis; a failure to read it must not hide the failure being recorded.
        try:
            return str(self._breaker.state())
        except Exception:
            return None


def failure_payload(
    exc: BaseException, attempt: int, final: bool, breaker_state: str | None
) -> dict[str, Any]:
    """The event payload for one failure, from already-redacted summaries."""
    payload: dict[str, Any] = {
        "error_class": type(exc).__name__,
        "message": truncate(scrub_text(str(exc)), MESSAGE_CHARS),
        "status_code": None,
        "attempt": attempt,
        "final": final,
        "breaker_state": breaker_state,
        "request": None,
        "response": None,
        "retry_after": None,
    }
    if isinstance(exc, UpstreamError):
        payload.update(
            status_code=exc.status_code,
            request=exc.request,
            response=exc.response,
            retry_after=getattr(exc, "retry_after", None),
        )
    elif isinstance(exc, CircuitOpenError):
        payload["retry_after"] = exc.retry_after_seconds
    return payload
