"""How a source's records are stored: its name, its kind, the table and the upstream id column.

``SyncSource`` names the sources a deployment configures with environment variables: the names their
bookmarks, runs and rows carried before sources became configurable, kept so upgrades change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table


class SyncSource(StrEnum):
    WOOCOMMERCE_PRODUCTS = "woocommerce-products"
    ODOO_SUPPLIERS = "odoo-suppliers"


@dataclass(frozen=True)
class SourceSpec:
    """``source`` is the configured source's name; rows are unique by (source, ``key``)."""

    source: str
    upstream: str
    table: Table
    key: str

    @property
    def rows(self) -> Any:
        """The clause that scopes a query on ``table`` to this source's rows: every read and every
        reconciliation of a source goes through it, so no run ever touches another source's rows."""
        return self.table.c.source == self.source

    @property
    def record_invalid_event(self) -> str:
        return f"{self.upstream}.sync.record_invalid"


def table_of(model: Any) -> Table:
    """A model's ``Table`` (typed as such; ``__table__`` is typed as a generic ``FromClause``)."""
    return cast(Table, model.__table__)
