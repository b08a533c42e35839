"""res.partner as the ORM returns it, and the mutations a supplier sync must survive."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.sandbox.catalog_odoo import OdooCatalog
from worker.sandbox.odoo_orm import OdooError, PartnerModel

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def catalog() -> OdooCatalog:
    return OdooCatalog(seed=5, size=400, clock=lambda: NOW)


def search(model: PartnerModel, domain: list[Any], **kwargs: Any) -> Any:
    return model.call("search", [domain], kwargs)


def test_same_seed_same_partners() -> None:
    assert list(OdooCatalog(2, 100).iter_partners()) == list(OdooCatalog(2, 100).iter_partners())


def test_values_follow_odoo_conventions(catalog: OdooCatalog) -> None:
    partners = list(catalog.iter_partners())
    assert all(isinstance(p["active"], bool) and isinstance(p["is_company"], bool) for p in partners)
    assert any(p["email"] is False for p in partners)
    assert all(None not in p.values() for p in partners)
    assert all(STAMP.match(p["write_date"]) and STAMP.match(p["create_date"]) for p in partners)
    contact = next(p for p in partners if p["parent_id"])
    assert contact["parent_id"][0] == contact["commercial_partner_id"][0]
    assert isinstance(contact["parent_id"][1], str)
    assert all(isinstance(p["country_id"], list) and len(p["country_id"]) == 2 for p in partners)
    assert any(any(not c.isascii() for c in p["name"]) for p in partners)
    assert {True, False} == {p["supplier_rank"] > 0 for p in partners}
    assert {True, False} == {p["active"] for p in partners}


def test_make_supplier_leaves_write_date_alone(catalog: OdooCatalog) -> None:
    model = PartnerModel(catalog, 17)
    pid = search(model, [("supplier_rank", "=", 0)], limit=1)[0]
    before = catalog.get(pid)
    after = catalog.make_supplier(pid)
    assert after["supplier_rank"] == 1 and after["write_date"] == before["write_date"]
    assert pid in {p["id"] for p in catalog.suppliers()}


def test_change_and_archive_bump_write_date(catalog: OdooCatalog) -> None:
    model = PartnerModel(catalog, 17)
    pid = search(model, [("supplier_rank", ">", 0)], limit=1, order="id")[0]
    assert catalog.change(pid, email="new@x.test")["write_date"] == "2026-01-02 03:04:05"
    catalog.set_write_date(pid, datetime(2020, 1, 1))
    archived = catalog.archive(pid)
    assert archived["active"] is False and archived["write_date"] == "2026-01-02 03:04:05"
    assert pid not in search(model, [("supplier_rank", ">", 0)])
    assert pid in search(model, [("supplier_rank", ">", 0)], context={"active_test": False})
    assert pid in search(model, [("active", "in", [True, False]), ("id", "=", pid)])


def test_delete_is_hard_and_read_of_a_deleted_id_fails(catalog: OdooCatalog) -> None:
    model = PartnerModel(catalog, 17)
    pid = catalog.ids()[3]
    catalog.delete(pid)
    assert pid not in model.call("search", [[]], {"context": {"active_test": False}})
    with pytest.raises(OdooError) as info:
        model.call("read", [[pid]], {"fields": ["name"]})
    assert info.value.kind == "missing_record"


def test_create_partner(catalog: OdooCatalog) -> None:
    created = catalog.create_partner(name="Ünïcode Supplies", is_company=True, supplier_rank=1)
    assert created["id"] > max(catalog.ids()[:-1])
    assert created["write_date"] == created["create_date"] == "2026-01-02 03:04:05"
    assert created["name"] == "Ünïcode Supplies" and created["is_company"] is True


def test_order_limit_offset_and_keyset(catalog: OdooCatalog) -> None:
    model = PartnerModel(catalog, 17)
    everything = search(model, [], order="id asc", context={"active_test": False})
    assert everything == sorted(catalog.ids())
    page = search(model, [], order="id asc", offset=10, limit=5, context={"active_test": False})
    assert page == everything[10:15]
    by_write = model.call("search_read", [[]], {"fields": ["write_date"], "order": "write_date asc, id asc"})
    keys = [(r["write_date"], r["id"]) for r in by_write]
    assert keys == sorted(keys)
    desc = search(model, [], order="id desc", limit=3)
    assert desc == sorted(desc, reverse=True)
    assert model.call("search_count", [[("supplier_rank", ">", 0)]], {}) == len(
        search(model, [("supplier_rank", ">", 0)])
    )


def test_fields_follow_the_version(catalog: OdooCatalog) -> None:
    pid = catalog.ids()[0]
    assert "mobile" in PartnerModel(catalog, 17).call("read", [[pid]], {"fields": ["mobile"]})[0]
    with pytest.raises(OdooError, match=re.escape("Invalid field 'mobile' on model 'res.partner'")):
        PartnerModel(catalog, 19).call("read", [[pid]], {"fields": ["mobile"]})
    fields = PartnerModel(catalog, 19).call("fields_get", [], {"attributes": ["type"]})
    assert "mobile" not in fields and fields["parent_id"] == {"type": "many2one"}


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "kind"),
    [
        ("unlink", [[1]], {}, "missing_method"),
        ("search", [[]], {"bogus": 1}, "type_error"),
        ("search", [[]], {"order": "nope asc"}, "value_error"),
        ("search", [[("nope", "=", 1)]], {}, "value_error"),
    ],
    ids=["unknown-method", "unexpected-kwarg", "bad-order", "bad-domain"],
)
def test_errors(
    catalog: OdooCatalog, method: str, args: list[Any], kwargs: dict[str, Any], kind: str
) -> None:
    with pytest.raises(OdooError) as info:
        PartnerModel(catalog, 17).call(method, args, kwargs)
    assert info.value.kind == kind


def test_write_date_is_stored_with_microseconds_and_returned_truncated() -> None:
    # Measured on Odoo 17: the database holds 07:46:22.746068, the API returns 07:46:22, and
    # domains compare the stored value, so '=' the returned second matches nothing and '>' it
    # matches every row written during it.
    stamp = datetime(2026, 12, 3, 7, 46, 22, 746068, tzinfo=UTC)
    catalog = OdooCatalog(seed=5, size=50, clock=lambda: stamp)
    model = PartnerModel(catalog, 17)
    pid = catalog.ids()[4]
    assert catalog.change(pid, email="x@y.test")["write_date"] == "2026-12-03 07:46:22"
    second = "2026-12-03 07:46:22"
    assert search(model, [("write_date", "=", second)], context={"active_test": False}) == []
    assert search(model, [("write_date", ">", second)], context={"active_test": False}) == [pid]
    assert pid in search(model, [("write_date", ">=", second)], context={"active_test": False})
    assert search(model, [("write_date", ">", datetime(2026, 12, 3, 7, 46, 23))]) == []


def test_write_many_is_one_transaction_with_one_stamp() -> None:
    ticks = iter(datetime(2026, 12, 3, 7, 0, 0, n * 1000, tzinfo=UTC) for n in range(1000))
    catalog = OdooCatalog(seed=5, size=300, clock=lambda: next(ticks))
    model = PartnerModel(catalog, 17)
    ids = catalog.ids()
    first, *_ = catalog.write_many(ids[100:], comment="mass edit")
    later = catalog.change(ids[5], comment="after")  # a later transaction, the same second
    stamped = search(model, [("write_date", ">=", "2026-12-03 07:00:00")], context={"active_test": False})
    assert sorted(stamped) == sorted([*ids[100:], ids[5]])
    assert {catalog.get(i)["write_date"] for i in stamped} == {first["write_date"], later["write_date"]}
    # Within the second Odoo orders by the stored microseconds: the later write sorts last,
    # although its id is the lowest.
    ordered = search(model, [("id", "in", stamped)], order="write_date asc", context={"active_test": False})
    assert ordered[-1] == ids[5]
    mass = set(ids[100:])
    assert len({p.write_date for p in catalog.partners() if p.id in mass}) == 1


def test_default_order_is_complete_name_then_id_desc(catalog: OdooCatalog) -> None:
    model = PartnerModel(catalog, 17)
    got = model.call("search_read", [[]], {"fields": ["complete_name"]})
    assert got == sorted(got, key=lambda r: (r["complete_name"], -r["id"]))
