"""Odoo ``res.partner`` suppliers -> ``suppliers`` rows. Pure functions; raise ``InvalidRecord``.

Odoo sends ``False`` for every empty field except real booleans, many2one as ``[id, "name"]`` and
datetimes as naive UTC strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.infra.errors import InvalidRecord
from worker.kinds.odoo.values import many2one_id, odoo_value, parse_odoo_datetime
from worker.kinds.woocommerce.normalize import record_id

TEXT_FIELDS = ("email", "phone", "vat", "ref", "website", "street", "street2", "city", "zip")


def _text(raw: Mapping[str, Any], field: str) -> str | None:
    value = odoo_value(raw.get(field))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        msg = f"{field}: expected text, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def _bool(raw: Mapping[str, Any], field: str, default: bool) -> bool:
    value = raw.get(field, default)
    if not isinstance(value, bool):
        msg = f"{field}: expected a boolean, got {type(value).__name__}"
        raise InvalidRecord(msg)
    return value


def many2one_name(field: str, value: Any) -> str | None:
    """The display name of a many2one ``[id, "name"]`` pair; ``False`` -> None."""
    if value is False or value is None:
        return None
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[1], str):
        return value[1]
    msg = f"{field}: expected [id, name], got {str(value)[:40]!r}"
    raise InvalidRecord(msg)


def _many2one(field: str, value: Any) -> int | None:
    try:
        return many2one_id(value)
    except (TypeError, ValueError):
        msg = f"{field}: expected [id, name], got {str(value)[:40]!r}"
        raise InvalidRecord(msg) from None


def _rank(value: Any) -> int:
    if value is False or value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"supplier_rank: expected an integer, got {str(value)[:40]!r}"
        raise InvalidRecord(msg)
    return value


def _write_date(value: Any) -> Any:
    try:
        return parse_odoo_datetime(value)
    except (TypeError, ValueError):
        msg = f"write_date: {str(value)[:40]!r} is not a timestamp"
        raise InvalidRecord(msg) from None


def _country_code(raw: Mapping[str, Any]) -> str | None:
    # Odoo 14+ has a related ``country_code``; older servers only send ``country_id``.
    code = _text(raw, "country_code")
    if code is not None and len(code) > 8:
        msg = f"country_code: {code[:40]!r} is not a country code"
        raise InvalidRecord(msg)
    return code


def normalize_supplier(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A supplier row; archived partners arrive with ``active=False`` and are mirrored as such."""
    name = odoo_value(raw.get("name"))
    if name is not None and not isinstance(name, str):
        msg = f"name: expected text, got {type(name).__name__}"
        raise InvalidRecord(msg)
    row: dict[str, Any] = {"odoo_id": record_id(raw), "name": name or ""}
    row.update({field: _text(raw, field) for field in TEXT_FIELDS})
    row.update(
        state_name=many2one_name("state_id", raw.get("state_id", False)),
        country_code=_country_code(raw),
        is_company=_bool(raw, "is_company", False),
        active=_bool(raw, "active", True),
        parent_odoo_id=_many2one("parent_id", raw.get("parent_id", False)),
        supplier_rank=_rank(raw.get("supplier_rank")),
        odoo_write_date=_write_date(raw.get("write_date")),
        raw=dict(raw),
    )
    return row
