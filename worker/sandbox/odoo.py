"""A fake Odoo on loopback: XML-RPC (``/xmlrpc/2/common``, ``/xmlrpc/2/object``) and, from 19, JSON-2.

Errors take the real shapes: XML-RPC faults over HTTP 200 (1 = traceback, 2 = user error,
3 = access denied) and JSON-2 status codes with ``{name, message, arguments, context, debug}``.
"""

from __future__ import annotations

import hmac
import json
import xmlrpc.client
from collections.abc import Callable
from datetime import datetime
from typing import Any

from worker.sandbox import faultplay
from worker.sandbox.catalog_odoo import OdooCatalog
from worker.sandbox.faults import FaultInjector, FaultSpec
from worker.sandbox.http import Simulator
from worker.sandbox.odoo_orm import MODEL, OdooError, PartnerModel
from worker.sandbox.rng import hex_token
from worker.sandbox.throttle import HostThrottle
from worker.sandbox.wire import Request, Response, json_response

XML = "text/xml; charset=utf-8"
HTML = "text/html; charset=utf-8"
TRACEBACK_HEAD = (
    "Traceback (most recent call last):\n"
    '  File "/usr/lib/python3/dist-packages/odoo/addons/base/controllers/rpc.py", line 153, in xmlrpc_2\n'
    "    response = self._xmlrpc(service)\n"
    '  File "/usr/lib/python3/dist-packages/odoo/service/model.py", line 62, in execute_kw\n'
    "    return execute(db, uid, obj, method, *args, **kw or {})\n"
)
NOT_FOUND_PAGE = (
    b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    b"<p>The requested URL was not found on the server.</p>\n"
)
ODOO_LOGIN_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en-US">\n<head><meta charset="utf-8"/><title>Odoo</title></head>\n'
    b'<body class="o_web_client"><div class="container py-5"><form class="oe_login_form" '
    b'action="/web/login" method="post"><label for="login">Email</label></form></div></body>\n</html>\n'
)
JSON2_ERRORS = {
    "access_denied": (401, "werkzeug.exceptions.Unauthorized"),
    "missing_model": (404, "werkzeug.exceptions.NotFound"),
    "missing_method": (404, "werkzeug.exceptions.NotFound"),
    "missing_record": (404, "odoo.exceptions.MissingError"),
    "value_error": (422, "builtins.ValueError"),
    "type_error": (422, "builtins.TypeError"),
    "db_missing": (404, "werkzeug.exceptions.NotFound"),
}
EXCEPTION_NAMES = {"value_error": "ValueError", "type_error": "TypeError",
                   "missing_method": "AttributeError", "db_missing": "psycopg2.OperationalError"}  # fmt: skip


class OdooSimulator(Simulator):
    """``with OdooSimulator(seed=1, size=500, version="17.0") as odoo: ...``."""

    def __init__(
        self,
        seed: int = 1,
        size: int = 500,
        *,
        version: str = "17.0",
        xmlrpc_enabled: bool = True,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        db: str = "sandbox",
        login: str = "admin",
        throttle: HostThrottle | None = None,
    ) -> None:
        super().__init__(faults=faults, host=host, port=port, clock=clock, throttle=throttle)
        self.version = version
        self.major = int(version.split(".")[0])
        self.xmlrpc_enabled = xmlrpc_enabled or self.major < 19
        self.catalog = OdooCatalog(seed, size, clock=self.now)
        self.model = PartnerModel(self.catalog, self.major)
        self.db = db
        self.login = login
        self.uid = 2
        self.api_key = hex_token(seed, 201, 40)

    @property
    def version_info(self) -> list[Any]:
        major, minor = (int(p) for p in ([*self.version.split("."), "0"])[:2])
        return [major, minor, 0, "final", 0, ""]

    def handle(self, request: Request) -> Response:
        if request.path in ("/xmlrpc/2/common", "/xmlrpc/2/object") and request.method == "POST":
            if not self.xmlrpc_enabled:
                return Response(404, NOT_FOUND_PAGE, HTML)
            return self._xmlrpc(request)
        if self.major >= 19 and request.path == "/web/version":
            return json_response(200, {"version_info": self.version_info, "version": self.version})
        if self.major >= 19 and request.path.startswith("/json/2/") and request.method == "POST":
            return self._json2(request)
        return Response(404, NOT_FOUND_PAGE, HTML)

    # XML-RPC ----------------------------------------------------------------------------------

    def _xmlrpc(self, request: Request) -> Response:
        try:
            params, method = xmlrpc.client.loads(request.body, use_builtin_types=True)
        except Exception as exc:  # any parse failure is a Fault 1, like Odoo
            return _fault(1, _traceback(type(exc).__name__, str(exc)))
        try:
            if request.path.endswith("/common"):
                result = self._common(method or "", list(params))
            else:
                result = self._object(method or "", list(params))
        except OdooError as exc:
            return _fault(*_fault_for(exc))
        except (TypeError, ValueError, IndexError) as exc:
            return _fault(1, _traceback(type(exc).__name__, str(exc)))
        return Response(200, xmlrpc.client.dumps((result,), methodresponse=True).encode(), XML)

    def _common(self, method: str, params: list[Any]) -> Any:
        if method == "version":
            return {
                "server_version": self.version,
                "server_version_info": self.version_info,
                "server_serie": self.version,
                "protocol_version": 1,
            }
        if method in ("authenticate", "login"):
            db, login, key = params[:3]
            self._check_db(db)
            ok = login == self.login and hmac.compare_digest(str(key), self.api_key)
            return self.uid if ok else False
        if method == "about":
            return "See http://openerp.com"
        raise OdooError("missing_method", f'Method not available "{method}"')

    def _object(self, method: str, params: list[Any]) -> Any:
        if method not in ("execute_kw", "execute"):
            raise OdooError("missing_method", f'Method not available "{method}"')
        db, uid, key, model, model_method = params[:5]
        self._check_db(db)
        if uid != self.uid or not hmac.compare_digest(str(key), self.api_key):
            raise OdooError("access_denied", "Access Denied")
        if model != MODEL:
            raise OdooError("missing_model", f"Object {model} doesn't exist")
        if method == "execute":
            return self.model.call(model_method, list(params[5:]), {})
        args = params[5] if len(params) > 5 else []
        kwargs = params[6] if len(params) > 6 else {}
        return self.model.call(model_method, list(args), dict(kwargs or {}))

    def _check_db(self, db: Any) -> None:
        if db != self.db:
            raise OdooError(
                "db_missing",
                'connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: '
                f'FATAL:  database "{db}" does not exist',
            )

    # JSON-2 -----------------------------------------------------------------------------------

    def _json2(self, request: Request) -> Response:
        _, _, rest = request.path.partition("/json/2/")
        model, _, method = rest.strip("/").partition("/")
        try:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip(), self.api_key):
                raise OdooError("access_denied", "Invalid apikey")
            database = request.headers.get("x-odoo-database")
            if database is not None and database != self.db:
                raise OdooError("db_missing", f'database "{database}" does not exist')
            if model != MODEL:
                raise OdooError("missing_model", f"the model {model!r} does not exist")
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _json2_error(400, "werkzeug.exceptions.BadRequest", "expected a JSON object")
            return json_response(200, self.model.call(method, [], body))
        except OdooError as exc:
            status, name = JSON2_ERRORS[exc.kind]
            return _json2_error(status, name, exc.message)

    # Faults -----------------------------------------------------------------------------------

    def fault_response(self, fault: FaultSpec, request: Request) -> Response:
        if fault.kind == "html200":
            return Response(200, ODOO_LOGIN_PAGE, HTML)
        if fault.kind == "auth":
            return self._auth_fault(fault, request)
        headers = faultplay.retry_after_headers(fault)
        if request.path.startswith("/json/2/") and fault.status == 500:
            response = _json2_error(500, "builtins.Exception", "Internal Server Error")
            response.headers = headers
            return response
        return Response(fault.status, faultplay.proxy_error_page(fault.status), HTML, headers)

    def _auth_fault(self, fault: FaultSpec, request: Request) -> Response:
        if request.path.startswith("/json/2/"):
            name = (
                "werkzeug.exceptions.Unauthorized"
                if fault.auth_status == 401
                else ("odoo.exceptions.AccessError")
            )
            return _json2_error(fault.auth_status, name, "Invalid apikey")
        if request.path == "/xmlrpc/2/common":
            # A revoked key: authenticate answers False rather than faulting.
            return Response(200, xmlrpc.client.dumps((False,), methodresponse=True).encode(), XML)
        return _fault(3, "Access Denied")

    def oversized_parts(self, request: Request) -> tuple[bytes, bytes, bytes, str]:
        record = self.catalog.get(self.catalog.ids()[0]) if len(self.catalog) else {"id": 1}
        if request.path.startswith("/xmlrpc/"):
            full = xmlrpc.client.dumps(([record],), methodresponse=True)
            start, end = full.index("<data>\n") + len("<data>\n"), full.rindex("</data>")
            unit = full[start:end].encode()
            return full[:start].encode(), unit, unit + full[end:].encode(), XML
        unit = json.dumps(record, separators=(",", ":")).encode()
        return b"[", unit + b",", unit + b"]", "application/json; charset=utf-8"


def _traceback(exception: str, message: str) -> str:
    return f"{TRACEBACK_HEAD}{exception}: {message}\n"


def _fault_for(exc: OdooError) -> tuple[int, str]:
    if exc.kind == "access_denied":
        return 3, exc.message
    if exc.kind in ("missing_model", "missing_record"):
        return 2, exc.message
    return 1, _traceback(EXCEPTION_NAMES.get(exc.kind, "Exception"), exc.message)


def _fault(code: int, message: str) -> Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True)
    return Response(200, body.encode(), XML)


def _json2_error(status: int, name: str, message: str) -> Response:
    return json_response(
        status,
        {
            "name": name,
            "message": message,
            "arguments": [message, status],
            "context": {},
            "debug": _traceback(name.rsplit(".", 1)[-1], message),
        },
    )
