"""Odoo domains (Polish notation with ``&``, ``|``, ``!``) compiled to predicates over partners.

Semantics follow the ORM's SQL: empty values (``False``) never satisfy ``<``/``>``/``ilike``, but do
satisfy ``!=`` and ``not in`` (Odoo adds ``OR col IS NULL``); many2one leaves compare ids, or the
display name when the operand is a string. Datetime leaves compare the stored value (microseconds
included) with the operand read as naive UTC, as PostgreSQL compares ``timestamp`` columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

Predicate = Callable[[Any], bool]
Accessor = Callable[[str], Callable[[Any], Any]]

OPERATORS = ("=", "!=", "<>", ">", ">=", "<", "<=", "in", "not in", "ilike", "not ilike", "like",
             "not like", "=?")  # fmt: skip
TRUE_LEAF = (1, "=", 1)
FALSE_LEAF = (0, "=", 1)


class InvalidDomain(ValueError):
    """The domain is malformed, or names a field or operator Odoo would reject."""


def _item_accessor(name: str) -> Callable[[Any], Any]:
    return lambda row: row[name]


def compile_domain(
    domain: Sequence[Any],
    fields: dict[str, str],
    many2one: frozenset[str] = frozenset(),
    accessor: Accessor = _item_accessor,
) -> Predicate:
    """A predicate over rows; ``accessor(field)`` reads a field (default ``row[field]``).

    ``fields`` maps each known field to its type; leaves on other fields are rejected.
    """
    items = list(domain or [])
    if not items:
        return lambda row: True
    stack: list[Predicate] = []
    for item in reversed(items):
        if item == "!":
            stack.append(_not(_pop(stack)))
        elif item in ("&", "|"):
            left, right = _pop(stack), _pop(stack)
            stack.append(_and(left, right) if item == "&" else _or(left, right))
        elif isinstance(item, list | tuple) and len(item) == 3:
            stack.append(_leaf(tuple(item), fields, many2one, accessor))
        else:
            msg = f"Invalid domain term {item!r}"
            raise InvalidDomain(msg)
    result = stack.pop()
    while stack:  # implicit '&' between top-level terms
        result = _and(result, stack.pop())
    return result


def mentions(domain: Sequence[Any], field: str) -> bool:
    return any(isinstance(t, list | tuple) and len(t) == 3 and t[0] == field for t in domain or [])


def _pop(stack: list[Predicate]) -> Predicate:
    if not stack:
        msg = "Invalid domain: an operator is missing an operand"
        raise InvalidDomain(msg)
    return stack.pop()


def _not(p: Predicate) -> Predicate:
    return lambda row: not p(row)


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) and b(row)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) or b(row)


def _leaf(
    leaf: tuple[Any, ...], fields: dict[str, str], many2one: frozenset[str], accessor: Accessor
) -> Predicate:
    if leaf == TRUE_LEAF:
        return lambda row: True
    if leaf == FALSE_LEAF:
        return lambda row: False
    field, op, operand = leaf
    if not isinstance(field, str) or field not in fields:
        msg = f"Invalid field {field!r} in leaf {leaf!r}"
        raise InvalidDomain(msg)
    if op not in OPERATORS:
        msg = f"Invalid operator {op!r} in leaf {leaf!r}"
        raise InvalidDomain(msg)
    read = accessor(field)
    if fields[field] == "datetime":
        operand, read = _as_datetime(operand), _stamps(read)
    else:
        operand = _normalize(operand)
    test = _matcher(op, operand)
    if field in many2one:
        by_name = isinstance(operand, str)
        return lambda row: test(_m2o(read(row), by_name))
    return lambda row: test(read(row))


def _matcher(op: str, operand: Any) -> Callable[[Any], bool]:
    """The comparison for one leaf, specialised once: a scan calls it for every record."""
    if op in _ORDERING and not _empty(operand):
        compare = _ORDERING[op]

        def ordered(value: Any) -> bool:
            if value is False or value is None:
                return False
            try:
                return bool(compare(value, operand))
            except TypeError:
                return False

        return ordered
    if op == "=" and not _empty(operand):
        return lambda value: bool(value == operand)
    return lambda value: _compare(value, op, operand)


def _as_datetime(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_as_datetime(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            msg = f"Invalid datetime {value!r}"
            raise InvalidDomain(msg) from None
    return value


def _stamps(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Reads a datetime field as a ``datetime`` whether the row holds one or its string."""

    def stamp(row: Any) -> Any:
        value = read(row)
        return datetime.fromisoformat(value) if isinstance(value, str) and value else value

    return stamp


def _normalize(operand: Any) -> Any:
    if isinstance(operand, datetime):
        return operand.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(operand, date):
        return operand.isoformat()
    if isinstance(operand, list | tuple):
        return [_normalize(o) for o in operand]
    return operand


def _m2o(value: Any, by_name: bool) -> Any:
    if isinstance(value, list | tuple):
        return value[1] if by_name else value[0]
    return value


def _empty(value: Any) -> bool:
    return value is False or value is None


def _compare(value: Any, op: str, operand: Any) -> bool:
    if op == "=?":
        return operand is False or operand is None or value == operand
    if op == "=":
        return _empty(value) if _empty(operand) else value == operand
    if op in ("!=", "<>"):
        return not _empty(value) if _empty(operand) else value != operand
    if op in ("in", "not in"):
        values = list(operand) if isinstance(operand, list | tuple) else [operand]
        hit = (_empty(value) and any(_empty(v) for v in values)) or (not _empty(value) and value in values)
        return hit if op == "in" else not hit
    if op in ("ilike", "not ilike", "like", "not like"):
        if _empty(value):
            return op.startswith("not")
        text, needle = str(value), str(operand)
        if "ilike" in op:
            text, needle = text.lower(), needle.lower()
        found = needle in text
        return not found if op.startswith("not") else found
    if _empty(value) or _empty(operand):
        return False
    try:
        return bool(_ORDERING[op](value, operand))
    except TypeError:
        return False


_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
