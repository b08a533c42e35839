"""Configured sources: one row per shop or ERP database the fleet mirrors.

Credentials are stored only as a MultiFernet token (``worker.sources.secrets``); everything else is
plain configuration an operator may read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Float, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import BigId, JSONDocument, UTCDateTime


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    # Non-secret connection settings of the kind (Odoo's database and login, WooCommerce's auth style).
    options: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # A Fernet token of the JSON credentials; never the credentials themselves.
    credentials: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # NULL: the fleet's default (SYNC_INCREMENTAL_INTERVAL_SECONDS, SYNC_FULL_CRON).
    incremental_interval_seconds: Mapped[float | None] = mapped_column(Float)
    full_cron: Mapped[str | None] = mapped_column(String(100))
    page_size: Mapped[int | None] = mapped_column(Integer)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    # Fields of the kind's breaker policy that differ for this source.
    breaker: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # Fields of the kind's request budget that differ for this source. The server default lets a
    # previous release's CLI still add sources while the fleet is upgraded.
    budget: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict, server_default=text("'{}'"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
