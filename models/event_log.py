"""The audit trail of every failure and every breaker transition."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import BigId, JSONDocument, created_now


class EventLog(Base):
    __tablename__ = "event_log"
    __table_args__ = (
        # "recent failures of type X": equality or prefix on the type, newest first.
        Index("ix_event_log_type_occurred", "event_type", "occurred_at"),
        Index("ix_event_log_occurred_at", "occurred_at"),
        Index("ix_event_log_correlation_id", "correlation_id"),
        Index("ix_event_log_aggregate_id", "aggregate_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(200))
    aggregate_id: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[created_now]
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # "metadata" is reserved on declarative classes, so the attribute has another name.
    event_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument, default=dict)
