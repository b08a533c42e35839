"""Pure helpers for Odoo's value conventions; the sync layer's normalisers call them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

ODOO_DATETIME = "%Y-%m-%d %H:%M:%S"


def odoo_value(value: Any, field_type: str | None = None) -> Any:
    """Odoo sends ``False`` for every empty field; a boolean field's ``False`` is a real value."""
    if value is False and field_type != "boolean":
        return None
    return value


def many2one_id(value: Any) -> int | None:
    """The id of a many2one ``[id, "display name"]`` pair (or bare id); ``False`` -> None."""
    if value is False or value is None:
        return None
    if isinstance(value, list | tuple):
        return int(value[0]) if value else None
    return int(value)


def parse_odoo_datetime(value: Any) -> datetime | None:
    """Odoo's naive UTC ``YYYY-MM-DD HH:MM:SS[.ffffff]`` as an aware UTC datetime."""
    if value is False or value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    parsed = datetime.fromisoformat(str(value).replace("T", " "))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_odoo_datetime(value: datetime) -> str:
    """An aware (or naive UTC) datetime as Odoo's naive UTC string, for domains."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(ODOO_DATETIME)
