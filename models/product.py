"""WooCommerce products and variations, one row each."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import BigId, JSONDocument, Money, UTCDateTime


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("source", "woo_id", name="uq_products_source_woo_id"),
        Index("ix_products_source_parent", "source", "parent_woo_id"),
        Index("ix_products_sku", "sku"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The configured source the row mirrors: the same upstream id in two shops is two rows.
    source: Mapped[str] = mapped_column(String(64))
    woo_id: Mapped[int] = mapped_column(BigInteger)
    # NULL for products; the parent product's WooCommerce id for variations.
    parent_woo_id: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    # Not unique: variations without their own SKU report the parent's.
    sku: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str | None] = mapped_column(String(255))
    price: Mapped[Decimal | None] = mapped_column(Money())
    regular_price: Mapped[Decimal | None] = mapped_column(Money())
    sale_price: Mapped[Decimal | None] = mapped_column(Money())
    manage_stock: Mapped[bool] = mapped_column(Boolean, default=False)
    # A variation whose manage_stock is "parent" reports its parent's stock.
    stock_managed_by_parent: Mapped[bool] = mapped_column(Boolean, default=False)
    stock_quantity: Mapped[int | None] = mapped_column(Integer)
    stock_status: Mapped[str | None] = mapped_column(String(32))
    date_created_gmt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    date_modified_gmt: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Set when a full reconciliation no longer finds the record upstream (force-deleted).
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
