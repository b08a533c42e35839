"""Query-parameter validation for the WooCommerce simulator, with WordPress's own error bodies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.sandbox.wire import Request
from worker.sandbox.woo_render import SITE_OFFSET

STATUSES = ("any", "future", "trash", "draft", "pending", "private", "publish")
ORDERBY = ("date", "id", "include", "title", "slug", "price", "popularity", "rating",
           "menu_order", "modified")  # fmt: skip
# Sort keys the catalog indexes; the others are valid WordPress values the simulator does not model.
MODELLED_ORDERBY = ("date", "id", "include", "modified", "menu_order", "title", "slug")
# WordPress's rest_parse_date pattern: a full date-time, seconds required, optional fraction and
# zone. A date alone is "Invalid date." (measured, 9.9.5), though Python would happily parse it.
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}(?::\d{2})?)?$")


class InvalidParam(Exception):
    """A 400 ``rest_invalid_param``; ``body`` is the exact WordPress error payload."""

    def __init__(self, name: str, message: str, code: str = "rest_invalid_param") -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {
            "code": "rest_invalid_param",
            "message": f"Invalid parameter(s): {name}",
            "data": {
                "status": 400,
                "params": {name: message},
                "details": {name: {"code": code, "message": message, "data": None}},
            },
        }


@dataclass(frozen=True)
class ListParams:
    page: int
    per_page: int
    statuses: frozenset[str]
    orderby: str
    descending: bool
    modified_after: int | None
    modified_before: int | None
    created_after: int | None
    created_before: int | None
    include: tuple[int, ...] | None
    fields: tuple[str, ...] | None


def parse_list(request: Request) -> ListParams:
    """Validate a collection request the way the WordPress REST server does, before any query."""
    gmt = (request.param("dates_are_gmt") or "").lower() in ("1", "true")
    status = request.param("status") or "any"
    if status not in STATUSES:
        raise InvalidParam("status", f"status is not one of {', '.join(STATUSES)}.")
    orderby = request.param("orderby") or "date"
    if orderby not in ORDERBY:
        raise InvalidParam("orderby", f"orderby is not one of {', '.join(ORDERBY)}.")
    if orderby not in MODELLED_ORDERBY:
        raise InvalidParam("orderby", f"orderby={orderby} is not modelled by the simulator.")
    order = request.param("order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidParam("order", "order is not one of asc, desc.")
    include = _id_list(request, "include")
    if orderby == "include" and not include:
        raise InvalidParam("orderby", "You need to define an include parameter to order by include.")
    return ListParams(
        page=_integer(request, "page", 1, 1, None),
        per_page=_integer(request, "per_page", 10, 1, 100),
        statuses=frozenset(s for s in STATUSES[1:] if s != "trash")
        if status == "any"
        else frozenset((status,)),
        orderby="id" if orderby == "menu_order" else orderby,
        descending=order == "desc" and orderby != "menu_order",
        modified_after=_date(request, "modified_after", gmt),
        modified_before=_date(request, "modified_before", gmt),
        created_after=_date(request, "after", gmt),
        created_before=_date(request, "before", gmt),
        include=tuple(include) if include else None,
        fields=requested_fields(request),
    )


def _integer(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(name, f"{name} is not of type integer.", "rest_invalid_type") from None
    if value < low or (high is not None and value > high):
        bound = (
            f"between {low} (inclusive) and {high} (inclusive)"
            if high is not None
            else f"greater than or equal to {low}"
        )
        raise InvalidParam(name, f"{name} must be {bound}", "rest_out_of_bounds")
    return value


def _date(request: Request, name: str, gmt: bool) -> int | None:
    """Epoch seconds (UTC); a naive value is site-local unless ``dates_are_gmt`` is set."""
    raw = request.param(name)
    if not raw:
        return None
    try:
        if not RFC3339.match(raw):
            raise ValueError(raw)
        parsed = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParam(name, "Invalid date.", "rest_invalid_date") from None
    if parsed.tzinfo is not None:
        return int(parsed.timestamp())
    epoch = int(parsed.replace(tzinfo=UTC).timestamp())
    return epoch if gmt else epoch - SITE_OFFSET


def _id_list(request: Request, name: str) -> list[int]:
    values = request.query.get(name, []) + request.query.get(f"{name}[]", [])
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise InvalidParam(name, f"{name}[0] is not of type integer.", "rest_invalid_type")
            ids.append(int(part))
    return ids


def requested_fields(request: Request) -> tuple[str, ...] | None:
    """``_fields``, which every WordPress REST route honours."""
    raw = request.param("_fields")
    if not raw:
        return None
    return tuple(f.strip() for f in raw.split(",") if f.strip())


def only_fields(record: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """``_fields=a,b.c``: keep only those keys, nested ones too, as ``rest_filter_response_fields`` does."""
    if fields is None:
        return record
    wanted: dict[str, Any] = {}
    for path in fields:
        *parents, last = path.split(".")
        node = wanted
        for name in parents:
            if node.get(name) is True:  # the whole parent is already wanted
                break
            node = node.setdefault(name, {})
        else:
            node[last] = True
    return _keep(record, wanted)


def _keep(data: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in data.items():
        spec = wanted.get(key)
        if spec is True:
            kept[key] = value
        elif isinstance(spec, dict) and isinstance(value, dict):
            kept[key] = _keep(value, spec)
        elif isinstance(spec, dict):
            # PHP intersects keys: a list has only numeric keys, so a nested field empties it.
            kept[key] = [] if isinstance(value, list) else value
    return kept
