"""Bookmarks per sync source and one row per sync run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import BigId, JSONDocument, UTCDateTime


class SyncState(Base):
    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Upstream modification time up to which every record is known to be mirrored.
    watermark: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Where an interrupted run resumes (page number, last id, ...), committed with each page.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    last_status: Mapped[str | None] = mapped_column(String(32))
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_full_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The fencing token of the run that holds the source: every page transaction checks it, so a run
    # that lost its lock (paused past its TTL) commits nothing after a newer run took over.
    fence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Requests for the source are numbered here (in the same store as ``sync_runs.serves_through``, so a
    # Redis flush cannot make a new request look served by an old run).
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_source_started", "source", "started_at"),
        Index("ix_sync_runs_status", "status"),
        Index("ix_sync_runs_source_serves", "source", "serves_through"),
        # Retention finds old runs of every source by it, and `syncworker runs` lists the newest with it.
        Index("ix_sync_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    task_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    marked_deleted: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # The fencing token this run held, and the newest request number it serves (every request for the
    # source numbered at or below it was made before this run started).
    fence: Mapped[int | None] = mapped_column(BigInteger)
    serves_through: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)


class ReconcileSeenId(Base):
    """Ids a full run's reconciliation listed upstream, kept across deliveries so it resumes in steps."""

    __tablename__ = "sync_reconcile_ids"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
