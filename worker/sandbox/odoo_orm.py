"""The slice of the Odoo ORM the simulators expose: ``res.partner`` search/read/count/fields_get.

Both transports (XML-RPC and JSON-2) call ``PartnerModel.call`` and translate ``OdooError`` into
their own fault shapes, so argument handling and error semantics are identical on both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.sandbox.catalog_odoo import FIELD_TYPES, MANY2ONE, OdooCatalog
from worker.sandbox.odoo_domain import InvalidDomain, compile_domain, mentions

MODEL = "res.partner"
DEFAULT_ORDER = "complete_name asc, id desc"
RELATIONS = {"state_id": "res.country.state", "country_id": "res.country", "parent_id": MODEL,
             "commercial_partner_id": MODEL, "company_id": "res.company"}  # fmt: skip
SIGNATURES: dict[str, tuple[str, ...]] = {
    "search": ("domain", "offset", "limit", "order", "count"),
    "search_read": ("domain", "fields", "offset", "limit", "order"),
    "search_count": ("domain", "limit"),
    "read": ("ids", "fields", "load"),
    "fields_get": ("allfields", "attributes"),
}


class OdooError(Exception):
    """An ORM failure; ``kind`` is one of access_denied, missing_model, missing_method,
    missing_record, value_error, type_error, db_missing."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class PartnerModel:
    """``res.partner`` for one Odoo version (fields removed in later versions are rejected)."""

    def __init__(self, catalog: OdooCatalog, major_version: int) -> None:
        self.catalog = catalog
        self.fields = {f: t for f, t in FIELD_TYPES.items() if not (f == "mobile" and major_version >= 19)}

    def call(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        handler: Callable[..., Any] | None = getattr(self, f"_{method}", None)
        if method not in SIGNATURES or handler is None:
            raise OdooError("missing_method", f"The method '{method}' does not exist on the model '{MODEL}'")
        kwargs = dict(kwargs)
        context = kwargs.pop("context", None) or {}
        bound = _bind(method, args, kwargs)
        with self.catalog.lock:
            return handler(context=context, **bound)

    def _search(
        self, *, context: dict[str, Any], domain: Any = None, offset: int = 0,
        limit: int | None = None, order: str | None = None, count: bool = False,
    ) -> Any:  # fmt: skip
        ids = self._search_ids(domain, order, offset, limit, context)
        return len(ids) if count else ids

    def _search_count(self, *, context: dict[str, Any], domain: Any = None, limit: int | None = None) -> int:
        return len(self._search_ids(domain, "id", 0, limit, context))

    def _search_read(
        self, *, context: dict[str, Any], domain: Any = None, fields: list[str] | None = None,
        offset: int = 0, limit: int | None = None, order: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        names = self._field_names(fields)
        ids = self._search_ids(domain, order, offset, limit, context)
        return [self._project(self.catalog.get(i), names) for i in ids]

    def _read(
        self, *, context: dict[str, Any], ids: Any = None, fields: list[str] | None = None,
        load: str = "_classic_read",
    ) -> list[dict[str, Any]]:  # fmt: skip
        names = self._field_names(fields)
        wanted = [ids] if isinstance(ids, int) else list(ids or [])
        missing = [i for i in wanted if i not in self.catalog]
        if missing:
            raise OdooError(
                "missing_record",
                "Record does not exist or has been deleted.\n"
                f"(Record: {MODEL}({', '.join(map(str, missing))},), User: 2)",
            )
        return [self._project(self.catalog.get(i), names) for i in wanted]

    def _fields_get(
        self, *, context: dict[str, Any], allfields: list[str] | None = None,
        attributes: list[str] | None = None,
    ) -> dict[str, dict[str, Any]]:  # fmt: skip
        out = {}
        for name, ftype in self.fields.items():
            if allfields and name not in allfields:
                continue
            info: dict[str, Any] = {
                "type": ftype,
                "string": name.replace("_id", "").replace("_", " ").title(),
                "readonly": name in ("id", "write_date", "create_date", "display_name"),
                "required": name == "name",
                "store": name != "display_name",
            }
            if name in RELATIONS:
                info["relation"] = RELATIONS[name]
            out[name] = {k: v for k, v in info.items() if not attributes or k in attributes}
        return out

    def _field_names(self, fields: list[str] | None) -> list[str]:
        if not fields:
            return list(self.fields)
        for name in fields:
            if name not in self.fields:
                raise OdooError("value_error", f"Invalid field {name!r} on model {MODEL!r}")
        return ["id", *[f for f in fields if f != "id"]]

    @staticmethod
    def _project(record: dict[str, Any], names: list[str]) -> dict[str, Any]:
        return {name: record[name] for name in names}

    def _search_ids(
        self, domain: Any, order: str | None, offset: int, limit: int | None, context: dict[str, Any]
    ) -> list[int]:
        try:
            predicate = compile_domain(domain or [], self.fields, MANY2ONE, self.catalog.accessor)
        except InvalidDomain as exc:
            raise OdooError("value_error", str(exc)) from None
        active_test = context.get("active_test", True) and not mentions(domain or [], "active")
        rows = [p for p in self.catalog.partners() if (not active_test or p.active) and predicate(p)]
        ids = [p.id for p in self._sorted(rows, order or DEFAULT_ORDER)]
        end = None if not limit else int(offset or 0) + int(limit)
        return ids[int(offset or 0) : end]

    def _sorted(self, rows: list[Any], order: str) -> list[Any]:
        terms = []
        for term in order.split(","):
            words = term.strip().split()
            if (
                not words
                or words[0] not in self.fields
                or len(words) > 2
                or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
            ):
                raise OdooError("value_error", f'Invalid "order" specified ({order}).')
            terms.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
        value_of = self.catalog.value_of
        if len({descending for _, descending in terms}) == 1:
            names = [name for name, _ in terms]
            rows.sort(key=lambda p: [_sort_key(value_of(p, n)) for n in names], reverse=terms[0][1])
            return rows
        # Stable sorts applied from the last term to the first give a multi-key order.
        for name, descending in reversed(terms):
            rows.sort(key=lambda p, n=name: _sort_key(value_of(p, n)), reverse=descending)  # type: ignore[misc]
        return rows


def _sort_key(value: Any) -> tuple[bool, Any]:
    # PostgreSQL puts NULLs last ascending and first descending; many2one sorts by display name.
    if isinstance(value, list):
        value = value[1]
    empty = value is False or value is None
    return (empty, "" if empty else value)


def _bind(method: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = SIGNATURES[method]
    if len(args) > len(names):
        msg = f"{method}() takes {len(names)} positional arguments but {len(args)} were given"
        raise OdooError("type_error", msg)
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise OdooError("type_error", f"{method}() got an unexpected keyword argument '{key}'")
        if key in bound:
            raise OdooError("type_error", f"{method}() got multiple values for argument '{key}'")
        bound[key] = value
    return bound
