"""Short, secret-free descriptions of requests and responses, for errors and the event log.

Summaries are built from an allow-list (method, redacted URL, chosen headers), never by dumping a
request: the Authorization header and query-string keys simply have no way in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_BODY_CHARS = 1000
REDACTED = "[redacted]"
SECRET_PARAMS = frozenset({"consumer_key", "consumer_secret", "api_key", "password", "token"})
# Headers worth keeping for diagnosis; anything else (Set-Cookie, Link echoing our query) stays out.
SAFE_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "retry-after",
    "x-wp-total",
    "x-wp-totalpages",
    "server",
)


def truncate(text: str, limit: int = MAX_BODY_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


_SECRET_IN_TEXT = re.compile(r"(?i)\b(" + "|".join(sorted(SECRET_PARAMS)) + r")=[^&\s'\"]*")


def scrub_text(text: str) -> str:
    """Replace ``key=value`` secrets in free text, such as a requests error naming a URL."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def redact_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Query parameters with every secret-bearing value replaced."""
    return {k: (REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in (params or {}).items()}


def redact_url(url: str) -> str:
    """The URL without user info and with secret query parameters replaced."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = urlencode(redact_params(dict(parse_qsl(parts.query, keep_blank_values=True))))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def request_summary(method: str, url: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Describe an HTTP request without its headers or body."""
    summary: dict[str, Any] = {"method": method, "url": redact_url(url)}
    if params:
        summary["params"] = redact_params(params)
    return summary


def response_summary(status: int, headers: Mapping[str, str], body: bytes | str) -> dict[str, Any]:
    """Describe a response: status, a few safe headers and the start of the body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    kept = {h: headers[h] for h in SAFE_RESPONSE_HEADERS if h in headers}
    return {"status": status, "headers": kept, "body": truncate(text)}
