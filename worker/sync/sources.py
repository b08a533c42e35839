"""The two sync sources, declared as data: which upstream, which table, which key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table

from models import Product, Supplier


class SyncSource(StrEnum):
    WOOCOMMERCE_PRODUCTS = "woocommerce-products"
    ODOO_SUPPLIERS = "odoo-suppliers"


@dataclass(frozen=True)
class SourceSpec:
    """How a source is stored: ``key`` is the upstream id column the upserts conflict on."""

    source: SyncSource
    upstream: str
    table: Table
    key: str

    @property
    def record_invalid_event(self) -> str:
        return f"{self.upstream}.sync.record_invalid"


def table_of(model: Any) -> Table:
    """A model's ``Table`` (typed as such; ``__table__`` is typed as a generic ``FromClause``)."""
    return cast(Table, model.__table__)


SPECS: dict[SyncSource, SourceSpec] = {
    SyncSource.WOOCOMMERCE_PRODUCTS: SourceSpec(
        SyncSource.WOOCOMMERCE_PRODUCTS, "woocommerce", table_of(Product), "woo_id"
    ),
    SyncSource.ODOO_SUPPLIERS: SourceSpec(SyncSource.ODOO_SUPPLIERS, "odoo", table_of(Supplier), "odoo_id"),
}


def spec_for(source: SyncSource) -> SourceSpec:
    return SPECS[source]
