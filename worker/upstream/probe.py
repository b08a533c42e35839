"""What `syncworker health` asks an upstream: does it answer, take our credentials, and which version is it.

A probe sends one attempt per request straight on the transport. It never goes through the breaker or
the retry policy and records nothing, so a health check cannot open or close a breaker, count as one
of its calls, or add rows to ``event_log``. All requests of one probe share one time budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from worker.infra.errors import (
    AuthenticationError,
    MalformedPayload,
    ResponseTooLarge,
    RetriableUpstreamError,
    UpstreamError,
)
from worker.infra.settings import Settings
from worker.upstream.http import HttpResponse, HttpTransport, describe_error_body, parse_json
from worker.upstream.summary import redact_url

OPERATION = "health_probe"
# Markers in a transport error's text -> what an operator should read. Order matters: a connect
# timeout also says "timed out".
NO_ANSWER_REASONS = (
    ("connection refused", "connection refused"),
    ("connecttimeout", "connection timed out"),
    ("read timed out", "no answer within {budget:g}s"),
    ("timed out", "no answer within {budget:g}s"),
    ("no time left", "no answer within {budget:g}s"),
    ("name or service not known", "host name does not resolve"),
    ("failed to resolve", "host name does not resolve"),
    ("temporary failure in name resolution", "host name does not resolve"),
    ("sslerror", "TLS handshake failed (certificate or protocol)"),
    ("toomanyredirects", "too many redirects: use the canonical URL"),
    ("remotedisconnected", "connection closed without an answer"),
    ("connection reset", "connection reset without an answer"),
    ("connection aborted", "connection closed without an answer"),
)


class ProbeFailed(Exception):
    """A probe step failed; the message says what failed and what to check."""


@dataclass
class ProbeReport:
    """What one upstream's probe found; ``problem`` is None when it is healthy."""

    url: str
    reachable: bool = False
    authenticated: bool | None = None
    version: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "authenticated": self.authenticated,
            "version": self.version,
            **self.extra,
        }


def new_report(url: str) -> ProbeReport:
    """An empty report for the upstream at ``url``, which it names without credentials."""
    return ProbeReport(redact_url(url.rstrip("/")))


def json_object(resp: HttpResponse) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is anything else (an HTML page, a list)."""
    try:
        data = parse_json(resp.body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class BudgetTransport(HttpTransport):
    """An ``HttpTransport`` whose requests share one deadline: each may wait only what is left of it."""

    def __init__(self, settings: Settings, upstream: str, *, session: requests.Session | None = None) -> None:
        super().__init__(settings, upstream, session=session)
        self.budget = settings.health_upstream_timeout_seconds
        self._deadline = time.monotonic() + self.budget

    def request(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        summary: dict[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> HttpResponse:
        left = self._deadline - time.monotonic()
        if left <= 0:
            msg = f"Timeout talking to {self.upstream}: no time left of the {self.budget:g}s budget"
            raise RetriableUpstreamError(msg, upstream=self.upstream, operation=operation)
        self.timeouts = (left, left)
        return super().request(method, url, operation=operation, summary=summary, params=params, **kwargs)


@contextmanager
def budget_transport(
    settings: Settings, upstream: str, session: requests.Session | None = None
) -> Iterator[BudgetTransport]:
    """A fresh transport for one probe; its own session is closed afterwards, a lent one is not."""
    transport = BudgetTransport(settings, upstream, session=session)
    try:
        yield transport
    finally:
        if session is None:
            transport.session.close()


def no_answer(exc: UpstreamError) -> bool:
    """True when a request got no HTTP answer at all: refused, timed out, DNS, TLS, redirect loop."""
    answered = (AuthenticationError, MalformedPayload, ResponseTooLarge)
    return exc.status_code is None and exc.response is None and not isinstance(exc, answered)


def no_answer_reason(exc: UpstreamError, budget: float) -> str:
    text = str(exc).lower()
    for marker, reason in NO_ANSWER_REASONS:
        if marker in text:
            return reason.format(budget=budget)
    return str(exc)


def upstream_words(exc: UpstreamError) -> str:
    """The status and the upstream's own words, e.g. ``401 woocommerce_rest_cannot_view: Sorry, …``."""
    body = (exc.response or {}).get("body")
    words = describe_error_body(body.encode()) if isinstance(body, str) else None
    if exc.status_code is None:
        return words or exc.message
    return f"{exc.status_code} {words}" if words else f"HTTP {exc.status_code}"


def request_failure(
    label: str, report: ProbeReport, exc: UpstreamError, budget: float, hint: str
) -> ProbeFailed:
    """A failure that is not about credentials: no answer, a failing server, or the wrong address.

    Notes on ``report`` whether anything answered; ``hint`` names what to check when the server
    answered, but not as the API we expect.
    """
    url = report.url
    report.reachable = report.reachable or not no_answer(exc)
    if no_answer(exc):
        return ProbeFailed(f"{label} unreachable at {url}: {no_answer_reason(exc, budget)}")
    if isinstance(exc, MalformedPayload | ResponseTooLarge):
        return ProbeFailed(f"{label} at {url} did not answer as its API does ({exc.message}): {hint}")
    if isinstance(exc, RetriableUpstreamError):
        words = upstream_words(exc)
        return ProbeFailed(f"{label} at {url} is failing ({words}): check the server and any proxy before it")
    return ProbeFailed(f"{label} at {url} answered {upstream_words(exc)}: {hint}")
