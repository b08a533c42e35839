"""SQLAlchemy 2 models. The schema only changes through Alembic migrations in ``migrations/``."""

from models.base import Base
from models.event_log import EventLog
from models.product import Product
from models.source import Source
from models.supplier import Supplier
from models.sync import ReconcileSeenId, SyncRun, SyncState

__all__ = ["Base", "EventLog", "Product", "ReconcileSeenId", "Source", "Supplier", "SyncRun", "SyncState"]
