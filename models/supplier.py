"""Odoo partners that are suppliers (``supplier_rank > 0``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import BigId, JSONDocument, UTCDateTime


class Supplier(Base):
    __tablename__ = "suppliers"
    __table_args__ = (UniqueConstraint("source", "odoo_id", name="uq_suppliers_source_odoo_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The configured source the row mirrors: the same upstream id in two databases is two rows.
    source: Mapped[str] = mapped_column(String(64))
    odoo_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(100))
    vat: Mapped[str | None] = mapped_column(String(100))
    ref: Mapped[str | None] = mapped_column(String(255))
    website: Mapped[str | None] = mapped_column(Text)
    street: Mapped[str | None] = mapped_column(Text)
    street2: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(String(255))
    zip: Mapped[str | None] = mapped_column(String(50))
    state_name: Mapped[str | None] = mapped_column(String(255))
    country_code: Mapped[str | None] = mapped_column(String(8))
    is_company: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    parent_odoo_id: Mapped[int | None] = mapped_column(BigInteger)
    supplier_rank: Mapped[int] = mapped_column(Integer, default=0)
    odoo_write_date: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Set when a full reconciliation no longer finds the partner as a supplier upstream.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    first_synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
