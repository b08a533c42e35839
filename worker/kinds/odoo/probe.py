"""Probing Odoo for `syncworker health`: the server answers, which version it runs, and our key is accepted.

The version comes from ``GET /web/version`` (Odoo 19+) or XML-RPC ``common.version()``, and picks
the protocol as the client does when ``ODOO_PROTOCOL=auto``. Over XML-RPC ``common.authenticate``
returns a uid, or False (never a fault) for a wrong login or key. JSON-2 has no login step, so one
cheap authenticated call proves the bearer key and the database: a ``search`` that matches nothing.
"""

from __future__ import annotations

import requests

from worker.infra.errors import AuthenticationError, FatalUpstreamError, UpstreamError
from worker.infra.settings import Settings
from worker.kinds.odoo.client import JSON2_MIN_MAJOR, MODEL, odoo_credentials
from worker.kinds.odoo.rpc import UPSTREAM, Json2, XmlRpc
from worker.upstream.probe import (
    OPERATION,
    BudgetTransport,
    ProbeFailed,
    ProbeReport,
    budget_transport,
    json_object,
    new_report,
    no_answer,
    request_failure,
    upstream_words,
)

LABEL = "Odoo"
URL_HINT = "check ODOO_URL, and ODOO_PROTOCOL (Odoo 19+ may serve JSON-2 only)"
NOTHING = {"domain": [["id", "=", 0]], "limit": 1}


def probe_odoo(settings: Settings, *, session: requests.Session | None = None) -> ProbeReport:
    """Ask the configured Odoo for its version, then check the credentials the sync would use."""
    with budget_transport(settings, UPSTREAM, session) as transport:
        return _OdooProbe(settings, transport).run()


class _OdooProbe:
    """The two steps of one probe (version, then credentials), filling one report."""

    def __init__(self, settings: Settings, transport: BudgetTransport) -> None:
        creds = odoo_credentials(settings)
        self.base, self.db, self.login = creds.url, creds.db, creds.login
        self.wanted = settings.odoo_protocol
        self.transport = transport
        self.xmlrpc = XmlRpc(transport, creds.url, creds.db, creds.login, creds.api_key)
        self.json2 = Json2(transport, creds.url, creds.db, creds.api_key)
        self.report = new_report(self.base)

    def run(self) -> ProbeReport:
        try:
            protocol = self.read_version()
            self.report.extra["protocol"] = protocol
            who = self.check_json2() if protocol == "json2" else self.check_xmlrpc()
        except ProbeFailed as exc:
            self.report.problem = str(exc)
            return self.report
        version = f" {self.report.version}" if self.report.version else ""
        self.report.summary = (
            f"{LABEL}{version} at {self.report.url} over {protocol}: {who} accepted on database {self.db!r}"
        )
        return self.report

    def read_version(self) -> str:
        """Record the server version; return the protocol to use (as configured, or chosen by version)."""
        found: tuple[str, int] | None = None
        try:
            if self.wanted != "xmlrpc":
                found = self.web_version()
            if found is None and self.wanted != "json2":
                found = self.xmlrpc_version()
        except UpstreamError as exc:
            raise self.failure(exc) from None
        self.report.reachable = True
        version, major = found or (None, 0)
        self.report.version = version
        if self.wanted != "auto":
            return self.wanted
        return "json2" if major >= JSON2_MIN_MAJOR else "xmlrpc"

    def web_version(self) -> tuple[str, int] | None:
        """Odoo 19's ``GET /web/version``; older servers answer 404 or a page that is not JSON."""
        try:
            resp = self.transport.request("GET", f"{self.base}/web/version", operation=OPERATION)
        except FatalUpstreamError as exc:
            if no_answer(exc):
                raise
            return None
        data = json_object(resp)
        info = data.get("version_info")
        if not isinstance(info, list) or not info or not isinstance(info[0], int):
            return None
        return str(data.get("version") or info[0]), info[0]

    def xmlrpc_version(self) -> tuple[str, int]:
        answer = self.xmlrpc.version(operation=OPERATION)
        info = answer.get("server_version_info")
        major = info[0] if isinstance(info, list) and info and isinstance(info[0], int) else 0
        return str(answer.get("server_version") or major), major

    def check_xmlrpc(self) -> str:
        try:
            self.xmlrpc.authenticate(operation=OPERATION)
        except AuthenticationError:
            self.report.authenticated = False
            msg = (
                f"{LABEL} refused the credentials of {self.login!r} on database {self.db!r}: check "
                "ODOO_USERNAME and ODOO_API_KEY (the key must belong to that user)"
            )
            raise ProbeFailed(msg) from None
        except UpstreamError as exc:
            raise self.failure(exc) from None
        self.report.authenticated = True
        return f"login {self.login!r}"

    def check_json2(self) -> str:
        try:
            self.json2.call(MODEL, "search", dict(NOTHING), operation=OPERATION)
        except AuthenticationError as exc:
            self.report.authenticated = False
            msg = (
                f"{LABEL} refused the API key ({upstream_words(exc)}): check ODOO_API_KEY, and that its "
                "user may read contacts"
            )
            raise ProbeFailed(msg) from None
        except UpstreamError as exc:
            raise self.failure(exc) from None
        self.report.authenticated = True
        return "API key"

    def failure(self, exc: UpstreamError) -> ProbeFailed:
        # A wrong database name is a Fault 1 (XML-RPC) or a 404 (JSON-2) whose text ends the same way.
        text = exc.message.lower()
        if "database" in text and "does not exist" in text:
            return ProbeFailed(f"{LABEL} at {self.report.url} has no database {self.db!r}: check ODOO_DB")
        return request_failure(LABEL, self.report, exc, self.transport.budget, URL_HINT)
