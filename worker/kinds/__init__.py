"""The registry of upstream kinds: a kind's name -> the folder that implements it.

Adding a kind is one folder under ``worker/kinds/`` exposing ``KIND`` and one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.kinds.base import SourceKind

REGISTRY: dict[str, str] = {
    "woocommerce": "worker.kinds.woocommerce",
    "odoo": "worker.kinds.odoo",
}


class UnknownKind(ValueError):
    """A source names a kind no folder implements."""


def get_kind(name: str) -> SourceKind:
    module = REGISTRY.get(name)
    if module is None:
        msg = f"unknown source kind {name!r}; known: {', '.join(sorted(REGISTRY))}"
        raise UnknownKind(msg)
    kind: SourceKind = importlib.import_module(module).KIND
    return kind


def all_kinds() -> list[SourceKind]:
    return [get_kind(name) for name in REGISTRY]
