"""Odoo's two wire protocols behind one ``call(model, method, named_args)``.

XML-RPC (``/xmlrpc/2``) for Odoo 13-18, JSON-2 (``/json/2/<model>/<method>``, bearer key) for 19+.
Both ride the client's requests session, so timeouts, size limit and pooling are the same.
"""

from __future__ import annotations

import json
import xml.parsers.expat
import xmlrpc.client
from typing import Any, Protocol

from worker.infra.errors import (
    AuthenticationError,
    FatalUpstreamError,
    MalformedPayload,
    RetriableUpstreamError,
    UpstreamError,
)
from worker.upstream.http import HttpResponse, HttpTransport, parse_json
from worker.upstream.summary import scrub_text, truncate

UPSTREAM = "odoo"
FAULT_MESSAGE_CHARS = 300
# XML-RPC passes these leading arguments positionally; their keyword names changed across versions
# (``search(args, ...)`` before 17, ``search(domain, ...)`` after).
POSITIONAL_ARGS: dict[str, tuple[str, ...]] = {"search": ("domain",), "read": ("ids",)}
# A Fault 1 is any server exception -- usually a bug that retrying repeats, except lock and
# serialization conflicts between concurrent transactions, which do clear up.
TRANSIENT_FAULT_MARKERS = (
    "could not serialize access",
    "serializationfailure",
    "deadlock detected",
    "lock not available",
    "locknotavailable",
    "concurrent update",
)


class OdooRpc(Protocol):
    """One Odoo model method call, classified into ``worker.infra.errors`` on failure."""

    def call(self, model: str, method: str, named: dict[str, Any], *, operation: str) -> Any: ...


def fault_error(fault: xmlrpc.client.Fault, ctx: dict[str, Any]) -> UpstreamError:
    """Classify an XML-RPC fault by code and, for code 1, by the traceback's last line."""
    text = str(fault.faultString or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = truncate(scrub_text(lines[-1] if lines else ""), FAULT_MESSAGE_CHARS)
    message = f"Odoo fault {fault.faultCode}: {last}"
    lowered = text.lower()
    if fault.faultCode in (3, 4) or "accessdenied" in lowered or "accesserror" in lowered:
        return AuthenticationError(message, **ctx)
    if any(marker in lowered for marker in TRANSIENT_FAULT_MARKERS):
        return RetriableUpstreamError(message, **ctx)
    return FatalUpstreamError(message, **ctx)


class XmlRpc:
    """``execute_kw`` over XML-RPC; authenticates once and keeps the uid."""

    def __init__(self, transport: HttpTransport, url: str, db: str, login: str, key: str) -> None:
        self._transport = transport
        self._url = url.rstrip("/")
        self._db = db
        self._login = login
        self._key = key
        self.uid: int | None = None

    def version(self, *, operation: str = "detect_version") -> dict[str, Any]:
        summary = {"method": "version", "endpoint": "/xmlrpc/2/common"}
        result = self._post("common", "version", (), operation, summary)
        if not isinstance(result, dict):
            msg = "Odoo version() did not return a struct"
            raise MalformedPayload(msg, upstream=UPSTREAM, operation=operation, request=summary)
        return result

    def authenticate(self, *, operation: str = "authenticate") -> int:
        """The uid for our login. Raises AuthenticationError when Odoo answers False."""
        summary = {"method": "authenticate", "db": self._db, "login": self._login}
        uid = self._post("common", "authenticate", (self._db, self._login, self._key, {}), operation, summary)
        if not uid or not isinstance(uid, int):
            msg = f"Odoo refused the credentials of {self._login!r} on database {self._db!r}"
            raise AuthenticationError(msg, upstream=UPSTREAM, operation=operation, request=summary)
        self.uid = uid
        return uid

    def call(self, model: str, method: str, named: dict[str, Any], *, operation: str) -> Any:
        kwargs = dict(named)
        args = [kwargs.pop(name) for name in POSITIONAL_ARGS.get(method, ()) if name in kwargs]
        # Summarise instead of logging the body: the api key is execute_kw's third argument.
        summary = {"method": "execute_kw", "model": model, "op": method, "domain": named.get("domain")}
        if self.uid is None:
            msg = "XmlRpc.call before authenticate"
            raise RuntimeError(msg)
        params = (self._db, self.uid, self._key, model, method, args, kwargs)
        return self._post("object", "execute_kw", params, operation, summary)

    def _post(
        self, service: str, method: str, params: tuple[Any, ...], operation: str, summary: dict[str, Any]
    ) -> Any:
        body = xmlrpc.client.dumps(params, methodname=method, allow_none=False).encode("utf-8")
        resp = self._transport.request(
            "POST", f"{self._url}/xmlrpc/2/{service}", operation=operation, summary=summary,
            data=body, headers={"Content-Type": "text/xml"},
        )  # fmt: skip
        return parse_xmlrpc(resp, operation)


def parse_xmlrpc(resp: HttpResponse, operation: str) -> Any:
    """The single result of an XML-RPC response, or a classified error for faults and junk."""
    ctx: dict[str, Any] = {
        "upstream": UPSTREAM,
        "operation": operation,
        "status_code": resp.status_code,
        "request": resp.request,
        "response": resp.summary(),
    }
    try:
        result, _ = xmlrpc.client.loads(resp.body, use_datetime=False)
    except xmlrpc.client.Fault as fault:
        raise fault_error(fault, ctx) from None
    except (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError, ValueError) as exc:
        msg = f"not an XML-RPC response ({type(exc).__name__})"
        raise MalformedPayload(msg, **ctx) from None
    if len(result) != 1:
        msg = f"XML-RPC response carried {len(result)} values, expected 1"
        raise MalformedPayload(msg, **ctx)
    return result[0]


class Json2:
    """Odoo 19's JSON-2 API: named arguments, bearer API key, plain HTTP status errors."""

    def __init__(self, transport: HttpTransport, url: str, db: str, key: str) -> None:
        self._transport = transport
        self._url = url.rstrip("/")
        self._headers = {
            "Authorization": f"bearer {key}",
            "X-Odoo-Database": db,
            "Content-Type": "application/json",
        }

    def call(self, model: str, method: str, named: dict[str, Any], *, operation: str) -> Any:
        url = f"{self._url}/json/2/{model}/{method}"
        summary = {"method": "POST", "url": url, "op": method, "domain": named.get("domain")}
        resp = self._transport.request(
            "POST", url, operation=operation, summary=summary,
            data=json.dumps(named).encode("utf-8"), headers=self._headers,
        )  # fmt: skip
        return parse_json2(resp, operation)


def parse_json2(resp: HttpResponse, operation: str) -> Any:
    """The bare JSON result of a JSON-2 call; anything else is a malformed payload."""
    content_type = resp.headers.get("Content-Type", "")
    try:
        if "json" not in content_type.lower():
            raise ValueError(content_type)
        return parse_json(resp.body)
    except ValueError:
        msg = f"not a JSON-2 response (Content-Type {content_type or 'none'!r})"
        raise MalformedPayload(
            msg, upstream=UPSTREAM, operation=operation, status_code=resp.status_code,
            request=resp.request, response=resp.summary(),
        ) from None  # fmt: skip
