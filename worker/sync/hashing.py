"""Content hashes: what decides whether an upserted row is rewritten or left alone.

The hash covers the normalised columns *and* the raw record minus ``_links``. Hashing only the columns
would leave ``raw`` stale whenever a field we do not normalise changes (meta_data, images, attributes);
the WooCommerce and Odoo APIs render an unchanged record identically on every read, so including the
raw record does not cause spurious writes. ``_links`` is dropped because it embeds the host name, which
changes with a site move although the product did not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

VOLATILE_RAW_KEYS = frozenset({"_links"})
# Bookkeeping columns that say when we synced, not what upstream holds.
NOT_CONTENT = frozenset({"content_hash", "first_synced_at", "last_synced_at", "deleted_at"})


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # 90 and 90.00 are the same price; normalise so re-formatting upstream is not a change.
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    msg = f"cannot hash {type(value).__name__}"
    raise TypeError(msg)


# One encoder for the process: ``json.dumps`` with non-default options builds a new one per call,
# which costs a third of hashing a typical product. The encoder holds no state between calls.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def canonical_json(value: Any) -> str:
    """Stable across runs and processes: sorted keys, no whitespace, Decimal as text."""
    return _CANONICAL.encode(value)


def content_hash(row: Mapping[str, Any]) -> str:
    """sha256 of the row's content columns, with the raw record stripped of volatile keys."""
    content = {k: v for k, v in row.items() if k not in NOT_CONTENT}
    raw = content.get("raw")
    if isinstance(raw, Mapping):
        content["raw"] = {k: v for k, v in raw.items() if k not in VOLATILE_RAW_KEYS}
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()
