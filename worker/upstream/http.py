"""The transport edge: one pooled session per client, size-limited streaming, error classification.

Every failure leaves this module as a ``worker.infra.errors`` type; nothing above it looks at status codes
or ``requests`` exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from worker.infra.errors import (
    AuthenticationError,
    FatalUpstreamError,
    MalformedPayload,
    RateLimited,
    ResponseTooLarge,
    RetriableUpstreamError,
    UpstreamError,
)
from worker.infra.settings import Settings
from worker.upstream.summary import (
    request_summary,
    response_summary,
    scrub_text,
    truncate,
)

CHUNK_BYTES = 64 * 1024
ERROR_MESSAGE_CHARS = 300

try:
    USER_AGENT = f"syncworker/{version('syncworker')}"
except PackageNotFoundError:  # running from a checkout that was never installed
    USER_AGENT = "syncworker/0.0.0"

# Status -> error class (the table Airbyte calls DEFAULT_ERROR_MAPPING). Statuses not listed fall back
# by class: other 4xx are permanent, other 5xx transient.
STATUS_ERRORS: dict[int, type[UpstreamError]] = {
    401: AuthenticationError,
    403: AuthenticationError,
    408: RetriableUpstreamError,
    425: RetriableUpstreamError,
    429: RateLimited,
}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_session(settings: Settings) -> requests.Session:
    """A pooled session with our User-Agent, TLS verification on and a redirect limit."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.verify = True
    # requests drops the Authorization header when a redirect changes host, so a www/apex or
    # http->https hop silently turns into a 401; the limit keeps a redirect loop short, and the
    # operator should configure the canonical URL.
    session.max_redirects = settings.http_max_redirects
    # Room for a page pool and the sync layer's variation pool at once (requests keeps only 10
    # connections by default), and no urllib3 retries: tenacity is the only retry layer.
    size = max(10, 2 * settings.woocommerce_page_concurrency + 2)
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class HttpResponse:
    """A fully read, size-checked response whose status was a success."""

    status_code: int
    headers: CaseInsensitiveDict[str]
    body: bytes
    request: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return response_summary(self.status_code, self.headers, self.body)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_retry_after(value: str | None, now: Clock = utc_now) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


# orjson turns an integer outside [-2**63, 2**64) into a float, silently losing digits, where
# ``json.loads`` keeps it exact. Any such literal is a run of at least 19 digits; finding one in a copy
# of the body with every digit mapped to "0" is a C-speed pass, a fraction of the decode itself.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def parse_json(body: bytes) -> Any:
    """Decode a JSON body to what ``json.loads`` gives; raises ``ValueError`` exactly where it would.

    orjson decodes the bytes directly at about half the stdlib's cost per response. It is stricter
    (it refuses a UTF-8 byte order mark, NaN/Infinity and lone surrogate escapes) and reads huge
    integers as floats; such bodies take the stdlib path, so what decodes, to which values, and what
    becomes ``MalformedPayload`` is unchanged. A long digit run inside a string (a barcode) only
    sends that body down the slower path.
    """
    if _LONG_DIGIT_RUN in body.translate(_DIGITS_AS_ZERO):
        return json.loads(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def describe_error_body(body: bytes) -> str | None:
    """The upstream's own words from a JSON error body (WooCommerce or Odoo JSON-2), if any."""
    try:
        data = parse_json(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or "message" not in data:
        return None
    label = data.get("code") or data.get("name") or "error"
    return truncate(f"{label}: {data['message']}", ERROR_MESSAGE_CHARS)


def error_for_status(status: int) -> type[UpstreamError] | None:
    """The error class for a status code; None for success."""
    if status < 300:
        return None
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return RetriableUpstreamError if status >= 500 else FatalUpstreamError


class HttpTransport:
    """Sends one request and returns a checked response or raises a classified error."""

    def __init__(
        self,
        settings: Settings,
        upstream: str,
        *,
        session: requests.Session | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.upstream = upstream
        self.session = session or build_session(settings)
        self.timeouts = (settings.http_connect_timeout, settings.http_read_timeout)
        self.max_bytes = settings.http_max_response_bytes
        self._clock = clock
        # The upstream's own clock, from the ``Date`` header of the latest answer: cursors and
        # watermarks must be in the clock that stamps the records, never the worker's.
        self.server_date: datetime | None = None

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
        """Send a request; ``summary`` replaces the default request description (e.g. for RPC).

        Raises:
            RetriableUpstreamError: connection errors, timeouts, 408/425/429, 5xx, truncated or
                oversized bodies.
            FatalUpstreamError: other 4xx, redirect loops, invalid URLs, TLS failures.
        """
        described = summary or request_summary(method, url, params)
        ctx: dict[str, Any] = {"upstream": self.upstream, "operation": operation, "request": described}
        try:
            resp = self.session.request(
                method, url, params=params, timeout=self.timeouts, stream=True, **kwargs
            )
        except requests.RequestException as exc:
            raise classify_exception(exc, ctx) from None
        with resp:
            body = self._read_limited(resp, ctx)
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(resp.headers)
        error_cls = error_for_status(resp.status_code)
        if error_cls is not None:
            raise self._status_error(error_cls, resp.status_code, headers, body, ctx)
        self.server_date = parse_http_date(headers.get("Date")) or self.server_date
        return HttpResponse(resp.status_code, headers, body, described)

    def _read_limited(self, resp: requests.Response, ctx: dict[str, Any]) -> bytes:
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            msg = f"response declares {declared} bytes, limit is {self.max_bytes}"
            raise ResponseTooLarge(msg, status_code=resp.status_code, **ctx)
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in resp.iter_content(CHUNK_BYTES):
                total += len(chunk)
                if total > self.max_bytes:
                    # Leaving the `with` closes the connection instead of draining the rest.
                    msg = f"response exceeded {self.max_bytes} bytes while streaming"
                    raise ResponseTooLarge(msg, status_code=resp.status_code, **ctx)
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise classify_exception(exc, {**ctx, "status_code": resp.status_code}) from None
        return b"".join(chunks)

    def _status_error(
        self,
        error_cls: type[UpstreamError],
        status: int,
        headers: CaseInsensitiveDict[str],
        body: bytes,
        ctx: dict[str, Any],
    ) -> UpstreamError:
        detail = describe_error_body(body) or f"HTTP {status}"
        message = f"{self.upstream} answered {status}: {detail}"
        response = response_summary(status, headers, body)
        if issubclass(error_cls, RetriableUpstreamError):
            wait = parse_retry_after(headers.get("Retry-After"), self._clock)
            if status == 503 and wait is not None:
                # A 503 that says when to come back is a host pacing us (maintenance, a WAF): no outage.
                error_cls = RateLimited
            return error_cls(message, retry_after=wait, status_code=status, response=response, **ctx)
        return error_cls(message, status_code=status, response=response, **ctx)


# Order matters: SSLError and ConnectTimeout are ConnectionErrors, ReadTimeout is a Timeout.
EXCEPTION_ERRORS: tuple[tuple[type[Exception], type[UpstreamError]], ...] = (
    (requests.exceptions.SSLError, FatalUpstreamError),
    (requests.exceptions.TooManyRedirects, FatalUpstreamError),
    (requests.exceptions.InvalidURL, FatalUpstreamError),
    (requests.exceptions.MissingSchema, FatalUpstreamError),
    (requests.exceptions.InvalidSchema, FatalUpstreamError),
    (requests.exceptions.ChunkedEncodingError, MalformedPayload),
    (requests.exceptions.ContentDecodingError, MalformedPayload),
    (requests.exceptions.Timeout, RetriableUpstreamError),
    (requests.exceptions.ConnectionError, RetriableUpstreamError),
)


def classify_exception(exc: requests.RequestException, ctx: dict[str, Any]) -> UpstreamError:
    """Map a ``requests`` exception to our taxonomy; unknown ones are treated as transient."""
    error_cls: type[UpstreamError] = RetriableUpstreamError
    for exc_type, mapped in EXCEPTION_ERRORS:
        if isinstance(exc, exc_type):
            error_cls = mapped
            break
    # str(exc) of a requests error names the URL, which may carry query-string keys.
    detail = truncate(scrub_text(str(exc)), ERROR_MESSAGE_CHARS)
    message = f"{type(exc).__name__} talking to {ctx['upstream']}: {detail}"
    return error_cls(message, **ctx)
