"""A small Odoo speaking XML-RPC and JSON-2 for res.partner, with the keyset domains we send."""

from __future__ import annotations

import json
import operator
import xmlrpc.client
from typing import Any

from upstream_helpers import ODOO_KEY, Reply, Request

DB = "acme"
LOGIN = "sync@acme.test"
UID = 7
OPS = {">": operator.gt, "<": operator.lt, "=": operator.eq, ">=": operator.ge, "in": lambda a, b: a in b}


def matches(record: dict[str, Any], domain: list[Any]) -> bool:
    """Evaluate a prefix-notation domain (``|``, ``&``, leaves) with implicit ``&`` at top."""

    def parse(pos: int) -> tuple[bool, int]:
        term = domain[pos]
        if term in ("|", "&"):
            left, pos = parse(pos + 1)
            right, pos = parse(pos)
            return (left or right) if term == "|" else (left and right), pos
        field, op, value = term
        return bool(OPS[op](record.get(field), value)), pos + 1

    pos, result = 0, True
    while pos < len(domain):
        ok, pos = parse(pos)
        result = result and ok
    return result


class FakeOdoo:
    def __init__(self, count: int, *, version: int = 17) -> None:
        self.version = version
        self.partners: list[dict[str, Any]] = []
        for i in range(1, count + 1):
            self.partners.append({
                "id": i, "name": f"Supplier {i}", "email": False if i % 3 else f"s{i}@x.test",
                "country_id": [21, "Belgium"] if i % 2 else False, "active": i % 10 != 0,
                "supplier_rank": 0 if i % 7 == 0 else 1,
                # Several partners share each second: the keyset must not lose any.
                "write_date": f"2026-01-01 00:{i // 60 % 60:02d}:{i % 60 // 5:02d}",
                "is_company": True,
            })  # fmt: skip
        self.fields = [
            "id",
            "name",
            "email",
            "country_id",
            "active",
            "supplier_rank",
            "write_date",
            "is_company",
        ]
        if version < 19:
            self.fields.append("mobile")
        self.fault: xmlrpc.client.Fault | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, req: Request) -> Reply:
        if req.path == "/web/version":
            if self.version < 19:
                return Reply(404, {"Content-Type": "text/html"}, b"<html>Not Found</html>")
            info = {"version_info": [self.version, 0, 0, "final", 0, ""], "version": f"{self.version}.0"}
            return Reply(200, {"Content-Type": "application/json"}, json.dumps(info).encode())
        if req.path.startswith("/json/2/"):
            return self._json2(req)
        params, method = xmlrpc.client.loads(req.body)
        try:
            if self.fault is not None:
                raise self.fault
            result = self._xmlrpc(req.path, method or "", params)
            body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=False)
        except xmlrpc.client.Fault as fault:
            body = xmlrpc.client.dumps(fault, methodresponse=True)
        return Reply(200, {"Content-Type": "text/xml"}, body.encode())

    def _xmlrpc(self, path: str, method: str, params: tuple[Any, ...]) -> Any:
        if path.endswith("/common") and method == "version":
            return {
                "server_version": f"{self.version}.0",
                "server_version_info": [self.version, 0, 0, "final", 0, ""],
            }
        if path.endswith("/common") and method == "authenticate":
            db, login, key, _ = params
            return UID if (db, login, key) == (DB, LOGIN, ODOO_KEY) else False
        db, uid, key, model, op, args, kwargs = params
        if (db, uid, key) != (DB, UID, ODOO_KEY):
            raise xmlrpc.client.Fault(3, "Traceback...\nodoo.exceptions.AccessDenied: Access Denied")
        if model != "res.partner":
            raise xmlrpc.client.Fault(2, f"Object {model} doesn't exist")
        if op == "search":
            kwargs = {"domain": args[0], **kwargs}
        if op == "read":
            kwargs = {"ids": args[0], **kwargs}
        return self._run(op, kwargs)

    def _json2(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"bearer {ODOO_KEY}":
            body = {"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"}
            return Reply(401, {"Content-Type": "application/json"}, json.dumps(body).encode())
        op = req.path.rsplit("/", 1)[-1]
        result = self._run(op, json.loads(req.body))
        return Reply(200, {"Content-Type": "application/json"}, json.dumps(result).encode())

    def _run(self, op: str, kw: dict[str, Any]) -> Any:
        self.calls.append((op, kw))
        if op == "fields_get":
            return {f: {"type": "char"} for f in self.fields}
        active_test = kw.get("context", {}).get("active_test", True)
        rows = [p for p in self.partners if p["active"] or not active_test]
        if op == "read":
            return [self._project(p, kw["fields"]) for p in rows if p["id"] in kw["ids"]]
        rows = [p for p in rows if matches(p, [tuple(t) if isinstance(t, list) else t for t in kw["domain"]])]
        keys = [k.split()[0] for k in kw.get("order", "id asc").split(",")]
        rows.sort(key=lambda p: tuple(p[k] for k in keys))
        rows = rows[: kw.get("limit") or None]
        if op == "search":
            return [p["id"] for p in rows]
        for f in kw.get("fields") or []:
            if f not in self.fields:
                raise xmlrpc.client.Fault(
                    1, f"Traceback...\nValueError: Invalid field '{f}' on model 'res.partner'"
                )
        return [self._project(p, kw.get("fields") or self.fields) for p in rows]

    @staticmethod
    def _project(p: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        return {"id": p["id"], **{f: p.get(f, False) for f in fields}}
