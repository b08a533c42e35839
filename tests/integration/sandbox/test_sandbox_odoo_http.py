"""The Odoo simulator over real sockets: XML-RPC with xmlrpc.client, JSON-2 with requests."""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from worker.sandbox import OdooSimulator

SAMPLES = Path(__file__).parents[2] / "unit" / "sandbox" / "samples"


@pytest.fixture(scope="module")
def odoo17() -> Iterator[OdooSimulator]:
    with OdooSimulator(seed=3, size=600, version="17.0") as sim:
        yield sim


@pytest.fixture(scope="module")
def odoo19() -> Iterator[OdooSimulator]:
    with OdooSimulator(seed=3, size=600, version="19.0") as sim:
        yield sim


def call(sim: OdooSimulator, service: str, method: str, *params: Any) -> Any:
    """One XML-RPC call on a proxy that is closed afterwards."""
    with xmlrpc.client.ServerProxy(f"{sim.base_url}/xmlrpc/2/{service}") as proxy:
        return getattr(proxy, method)(*params)


def execute(sim: OdooSimulator, method: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
    params = (sim.db, sim.uid, sim.api_key, "res.partner", method, args, kwargs or {})
    return call(sim, "object", "execute_kw", *params)


def json2(sim: OdooSimulator, method: str, key: str | None = None, **body: Any) -> requests.Response:
    headers = {"Authorization": f"bearer {key or sim.api_key}", "X-Odoo-Database": sim.db}
    return requests.post(
        f"{sim.base_url}/json/2/res.partner/{method}", json=body, headers=headers, timeout=10
    )


def test_version_and_authenticate(odoo17: OdooSimulator) -> None:
    version = call(odoo17, "common", "version")
    assert version["server_version"] == "17.0" and version["server_version_info"][0] == 17
    assert call(odoo17, "common", "authenticate", odoo17.db, odoo17.login, odoo17.api_key, {}) == 2
    assert call(odoo17, "common", "authenticate", odoo17.db, odoo17.login, "wrong", {}) is False


def test_id_paging_inside_a_date_filter_reads_every_supplier_once(odoo17: OdooSimulator) -> None:
    # Paging by id inside a fixed date filter: the date never has to advance, so no second
    # holding many rows can stall it (the (write_date, id) keyset below does stall).
    since, seen, last = "2020-01-01 00:00:00", [], 0
    while True:
        page = execute(
            odoo17,
            "search_read",
            [[("supplier_rank", ">", 0), ("write_date", ">=", since), ("id", ">", last)]],
            {"fields": ["write_date", "name"], "order": "id asc", "limit": 50,
             "context": {"active_test": False}},
        )  # fmt: skip
        if not page:
            break
        seen += [r["id"] for r in page]
        last = page[-1]["id"]
    want = [p["id"] for p in odoo17.catalog.suppliers() if p["write_date"] >= since]
    assert seen == sorted(want) and len(seen) > 50


def test_a_keyset_from_returned_write_dates_repeats_its_page(odoo17: OdooSimulator) -> None:
    # The measured Odoo 17 trap: returned stamps lack the stored microseconds, so '=' them matches
    # nothing and '>' them matches the row again; the old keyset serves the same page forever.
    options = {"fields": ["write_date"], "order": "write_date asc, id asc", "limit": 1}
    page = execute(odoo17, "search_read", [[]], options)
    w, i = page[0]["write_date"], page[0]["id"]
    keyset = ["|", ("write_date", ">", w), "&", ("write_date", "=", w), ("id", ">", i)]
    again = execute(odoo17, "search_read", [keyset], options)
    assert again == page


def test_search_read_values_over_the_wire(odoo17: OdooSimulator) -> None:
    ids = execute(odoo17, "search", [[("parent_id", "!=", False)]], {"limit": 5, "order": "id asc"})
    rows = execute(odoo17, "read", [ids], {"fields": ["name", "parent_id", "email", "active", "country_id"]})
    assert [r["id"] for r in rows] == ids
    for row in rows:
        assert isinstance(row["parent_id"], list) and row["active"] is True
        assert row["email"] is False or "@" in row["email"]
    assert execute(odoo17, "search_count", [[]]) < execute(
        odoo17, "search_count", [[]], {"context": {"active_test": False}}
    )


@pytest.mark.parametrize(
    ("db", "uid", "key", "model", "kwargs", "code", "text"),
    [
        (None, None, "bad", "res.partner", {}, 3, "Access Denied"),
        (None, 99, None, "res.partner", {}, 3, "Access Denied"),
        (None, None, None, "res.bogus", {}, 2, "Object res.bogus doesn't exist"),
        ("x", None, None, "res.partner", {}, 1, 'database "x" does not exist'),
        (None, None, None, "res.partner", {"fields": ["nope"]}, 1, "Invalid field 'nope'"),
    ],
    ids=["bad-key", "bad-uid", "unknown-model", "unknown-db", "invalid-field"],
)
def test_faults_like_real_odoo(
    odoo17: OdooSimulator, db: Any, uid: Any, key: Any, model: str, kwargs: Any, code: int, text: str
) -> None:
    params = (db or odoo17.db, uid or odoo17.uid, key or odoo17.api_key, model, "search_read", [[]], kwargs)
    with pytest.raises(xmlrpc.client.Fault) as info:
        call(odoo17, "object", "execute_kw", *params)
    assert info.value.faultCode == code and text in info.value.faultString
    if code == 1:
        assert info.value.faultString.startswith("Traceback (most recent call last):")


def test_mobile_exists_on_17_but_not_on_19(odoo17: OdooSimulator, odoo19: OdooSimulator) -> None:
    assert "mobile" in execute(odoo17, "search_read", [[]], {"fields": ["mobile"], "limit": 1})[0]
    with pytest.raises(xmlrpc.client.Fault) as info:
        execute(odoo19, "search_read", [[]], {"fields": ["mobile"], "limit": 1})
    assert "Invalid field 'mobile' on model 'res.partner'" in info.value.faultString


def test_make_supplier_is_invisible_to_a_write_date_cursor(odoo17: OdooSimulator) -> None:
    newest = execute(
        odoo17, "search_read", [[]], {"fields": ["write_date"], "order": "write_date desc", "limit": 1}
    )
    cursor = newest[0]["write_date"]
    pid = execute(odoo17, "search", [[("supplier_rank", "=", 0)]], {"limit": 1})[0]
    odoo17.catalog.make_supplier(pid)
    incremental = execute(odoo17, "search", [[("supplier_rank", ">", 0), ("write_date", ">", cursor)]])
    assert pid not in incremental
    assert pid in execute(
        odoo17, "search", [[("supplier_rank", ">", 0)]], {"context": {"active_test": False}}
    )


def test_json2_search_read_and_web_version(odoo19: OdooSimulator) -> None:
    response = json2(
        odoo19, "search_read", domain=[["supplier_rank", ">", 0]], fields=["name"], limit=3, order="id asc"
    )
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 3 and all(set(r) == {"id", "name"} for r in rows)
    assert json2(odoo19, "search_count", domain=[]).json() == execute(odoo19, "search_count", [[]])
    version = requests.get(odoo19.base_url + "/web/version", timeout=5).json()
    assert version == json.loads((SAMPLES / "odoo_web_version.json").read_text())


@pytest.mark.parametrize(
    ("method", "body", "key", "status", "name"),
    [
        ("search", {}, "wrong", 401, "werkzeug.exceptions.Unauthorized"),
        ("search_read", {"fields": ["mobile"]}, None, 422, "builtins.ValueError"),
        ("search", {"bogus": 1}, None, 422, "builtins.TypeError"),
        ("unlink", {"ids": [1]}, None, 404, "werkzeug.exceptions.NotFound"),
    ],
    ids=["bad-key", "invalid-field", "unexpected-argument", "unknown-method"],
)
def test_json2_errors(
    odoo19: OdooSimulator, method: str, body: dict[str, Any], key: str | None, status: int, name: str
) -> None:
    response = json2(odoo19, method, key, **body)
    assert response.status_code == status
    error = response.json()
    assert error["name"] == name and set(error) == {"name", "message", "arguments", "context", "debug"}


def test_json2_is_not_there_before_19(odoo17: OdooSimulator) -> None:
    assert json2(odoo17, "search").status_code == 404


def test_xmlrpc_can_be_switched_off_on_19() -> None:
    with OdooSimulator(size=10, version="19.0", xmlrpc_enabled=False) as odoo:
        with pytest.raises(xmlrpc.client.ProtocolError) as info:
            call(odoo, "common", "version")
        assert info.value.errcode == 404
        assert json2(odoo, "search", limit=1).status_code == 200


def test_auth_fault_on_both_transports(odoo19: OdooSimulator) -> None:
    odoo19.faults.set(kind="auth")
    try:
        assert call(odoo19, "common", "authenticate", odoo19.db, odoo19.login, odoo19.api_key, {}) is False
        with pytest.raises(xmlrpc.client.Fault) as info:
            execute(odoo19, "search", [[]])
        assert info.value.faultCode == 3
        assert json2(odoo19, "search").status_code == 401
    finally:
        odoo19.faults.clear()


def test_status_and_html_faults(odoo19: OdooSimulator) -> None:
    try:
        odoo19.faults.set(kind="status", status=502, paths=["/xmlrpc/"])
        with pytest.raises(xmlrpc.client.ProtocolError) as info:
            execute(odoo19, "search", [[]])
        assert info.value.errcode == 502
        odoo19.faults.set(kind="status", status=429, retry_after=7)
        response = json2(odoo19, "search")
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        odoo19.faults.set(kind="html200")
        response = json2(odoo19, "search")
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    finally:
        odoo19.faults.clear()


def test_oversized_xmlrpc_is_valid_looking_xml(odoo17: OdooSimulator) -> None:
    odoo17.faults.set(kind="oversized", oversized_bytes=200_000, oversized_content_length=True)
    try:
        body = xmlrpc.client.dumps(
            ("sandbox", 2, odoo17.api_key, "res.partner", "search", [[]]), "execute_kw"
        )
        response = requests.post(odoo17.base_url + "/xmlrpc/2/object", data=body, timeout=10)
        assert len(response.content) == 200_000
        assert response.content.startswith(b"<?xml") and response.content.endswith(b"</methodResponse>\n")
    finally:
        odoo17.faults.clear()
