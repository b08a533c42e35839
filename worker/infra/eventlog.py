"""EventLog: one event = one short transaction of its own, spooled when the database is down.

An event must outlive the work it describes: a sync batch that fails and rolls back must not take its
failure record with it, so every event is written on its own connection and committed at once. When the
database does not answer, the event goes to a Redis list, or to a local file when Redis is down too, and
is written later, in order, by the next ``record`` or by ``flush_pending``. Each event carries a uuid
(``metadata["event_uuid"]``) so a flush that dies between the commit and the spool trim is not repeated.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis
import sqlalchemy
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import event, insert, select
from sqlalchemy.exc import SQLAlchemyError

from models import EventLog as EventLogRow
from worker.infra import metrics
from worker.infra.db import make_engine
from worker.infra.eventspool import FileSpool, PendingEvent, RedisSpool, parse_lines, unique_events
from worker.infra.redaction import Redactor, jsonable
from worker.infra.settings import Settings

logger = logging.getLogger(__name__)

BODY_LIMIT = 1000
STACK_LIMIT = 8000
TEXT_LIMIT = 4000
ID_LIMIT = 200
# Strings under these payload keys are cut to their own limit (request/response bodies, tracebacks).
KEY_LIMITS = {
    "request": BODY_LIMIT,
    "response": BODY_LIMIT,
    "body": BODY_LIMIT,
    "request_body": BODY_LIMIT,
    "response_body": BODY_LIMIT,
    "stack": STACK_LIMIT,
    "traceback": STACK_LIMIT,
}
# After a failure, stop trying for this long, so a burst of events does not each wait on a dead server.
DOWN_MEMO_SECONDS = 2.0
REDIS_TIMEOUT = 0.5
FLUSH_BATCH = 500
# Batches a ``record`` call flushes before it spools its own event behind the rest of the backlog.
RECORD_FLUSH_BATCHES = 2

# Breaks ties between events recorded in the same microsecond (or under a frozen test clock).
_sequence = itertools.count()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EventLog:
    """Records events; ``record`` never raises and loses nothing while any spool is writable."""

    def __init__(
        self,
        engine: sqlalchemy.Engine,
        redis: redis.Redis | None,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._monotonic = monotonic
        self._redactor = Redactor.from_settings(settings)
        spool_client = _fail_fast(redis) if redis is not None else None
        self._redis_spool = RedisSpool(spool_client, settings.redis_key_prefix) if spool_client else None
        self._file_spool = FileSpool(Path(settings.event_spool_path))
        self._db_down_until = 0.0
        self._redis_down_until = 0.0
        self._table = cast(sqlalchemy.Table, EventLogRow.__table__)

    @classmethod
    def from_settings(cls, settings: Settings) -> EventLog:
        """An EventLog with its own engine and Redis client, both with short timeouts."""
        engine = make_engine(settings.database_url, connect_timeout=2, pool_timeout=5)
        if engine.dialect.name == "sqlite":
            # A caller holding a write transaction on the same file would otherwise make us wait 30 s.
            event.listen(engine, "connect", _short_sqlite_busy_timeout)
        return cls(engine, redis.Redis.from_url(settings.redis_url), settings)

    def close(self) -> None:
        """Release the engine's connections (for an EventLog built by ``from_settings``)."""
        self._engine.dispose()

    def forget_connections_after_fork(self) -> None:
        """In a forked child: drop the parent's pooled connections without closing its sockets."""
        self._engine.dispose(close=False)

    def record(
        self,
        event_type: str,
        *,
        aggregate_id: str | None = None,
        correlation_id: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Store one event in its own transaction, or spool it. Never raises."""
        try:
            pending = self._build(event_type, aggregate_id, correlation_id, payload, metadata, occurred_at)
        except Exception:
            logger.exception("event log: could not build event %s", event_type)
            return
        try:
            self._deliver(pending)
        except Exception:
            # Last resort: every spool refused the event, so at least the log keeps it.
            logger.exception("event log: event lost to every store: %s", pending.to_json())

    def flush_pending(self) -> int:
        """Write spooled events to the database, oldest first; returns how many were written."""
        try:
            return self._flush()[0]
        except Exception as exc:
            if isinstance(exc, SQLAlchemyError):
                self._mark_db_down()
            logger.warning("event log: flush failed; events stay spooled", exc_info=True)
            return 0

    # -- building -------------------------------------------------------------------------------

    def _build(
        self,
        event_type: str,
        aggregate_id: str | None,
        correlation_id: str | None,
        payload: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        occurred_at: datetime | None,
    ) -> PendingEvent:
        when = occurred_at or self._clock()
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        scrub = self._redactor.scrub
        return PendingEvent(
            event_uuid=uuid.uuid4().hex,
            seq=next(_sequence),
            event_type=scrub(jsonable(event_type), limit=ID_LIMIT),
            aggregate_id=self._short(aggregate_id),
            correlation_id=self._short(correlation_id),
            occurred_at=when.astimezone(UTC).isoformat(),
            payload=scrub(jsonable(payload or {}), limit=TEXT_LIMIT, key_limits=KEY_LIMITS),
            metadata=scrub(jsonable(metadata or {}), limit=TEXT_LIMIT, key_limits=KEY_LIMITS),
        )

    def _short(self, value: str | None) -> str | None:
        return None if value is None else self._redactor.scrub_text(jsonable(str(value)), ID_LIMIT)

    # -- delivering ------------------------------------------------------------------------------

    def _deliver(self, pending: PendingEvent) -> None:
        if self._db_usable():
            try:
                # Older spooled events go first, or the log's order would lie.
                caught_up = not self._has_pending() or self._flush(RECORD_FLUSH_BATCHES)[1]
                if caught_up:
                    self._insert([pending], dedupe=False)
                    return
            except SQLAlchemyError:
                self._mark_db_down()
            except (OSError, redis.RedisError):
                logger.warning("event log: could not flush the spool; spooling", exc_info=True)
        self._spool(pending)

    def _spool(self, pending: PendingEvent) -> None:
        line = pending.to_json()
        if self._redis_spool is not None and self._redis_usable():
            try:
                self._redis_spool.push(line)
                return
            except redis.RedisError:
                self._mark_redis_down()
        self._file_spool.append(line)

    def _has_pending(self) -> bool:
        if self._file_spool.has_pending():
            return True
        if self._redis_spool is None or not self._redis_usable():
            return False
        try:
            return self._redis_spool.pending() > 0
        except redis.RedisError:
            self._mark_redis_down()
            return False

    def _insert(self, events: list[PendingEvent], *, dedupe: bool) -> int:
        with self._engine.begin() as conn:
            if dedupe:
                # A push that timed out after Redis stored it was also written to the file: keep one.
                events = unique_events(events)
                stored = self._already_stored(conn, events)
                events = [e for e in events if e.event_uuid not in stored]
            if events:
                conn.execute(insert(self._table), [e.row() for e in events])
        for written in events:
            metrics.record_event_written(written.event_type)
        return len(events)

    def _already_stored(self, conn: sqlalchemy.Connection, events: list[PendingEvent]) -> set[str]:
        # Only a flush that died after its commit leaves duplicates; the occurred_at range uses the index.
        times = [e.sort_key[0] for e in events]
        uuid_col = EventLogRow.event_metadata["event_uuid"].as_string()
        query = select(uuid_col).where(
            EventLogRow.occurred_at.between(min(times), max(times)),
            uuid_col.in_([e.event_uuid for e in events]),
        )
        return {str(u) for u in conn.execute(query).scalars()}

    # -- flushing --------------------------------------------------------------------------------

    def _flush(self, max_batches: int | None = None) -> tuple[int, bool]:
        """(events written, whether both spools are now empty as far as this process can tell).

        ``record`` passes ``max_batches`` so one caller does not drain a long outage's backlog alone;
        ``flush_pending`` drains everything.
        """
        written, complete = 0, True
        with ExitStack() as stack:
            claim = stack.enter_context(self._file_spool.claim())
            if claim is None and self._file_spool.has_pending():
                complete = False  # another process is flushing the file
            remaining = sorted(claim.events if claim else [], key=_key)
            token = self._redis_lock(stack)
            if token is None and self._redis_has_items():
                complete = False
            for batch_number in itertools.count(1):
                read, batch = self._redis_batch(token)
                more = read == FLUSH_BATCH
                if more:
                    # Interleave by time: only file events older than the batch's newest go with it.
                    cutoff = max((_key(e) for e in batch), default=None)
                    take = [e for e in remaining if cutoff is not None and _key(e) <= cutoff]
                    remaining = remaining[len(take) :]
                else:
                    take, remaining = remaining, []
                merged = sorted(batch + take, key=_key)
                if merged:
                    written += self._insert(merged, dedupe=True)
                if read and not self._trim(token, read):
                    return written, False  # lost the lock: the new holder dedupes what we wrote
                if not more:
                    break
                if max_batches is not None and batch_number >= max_batches:
                    complete = False
                    break
            if claim is not None and not remaining:
                claim.done()
        return written, complete

    def _redis_lock(self, stack: ExitStack) -> str | None:
        spool = self._redis_spool
        if spool is None or not self._redis_usable():
            return None
        try:
            token = spool.lock()
        except redis.RedisError:
            self._mark_redis_down()
            return None
        if token is not None:
            stack.callback(self._release, spool, token)
        return token

    def _release(self, spool: RedisSpool, token: str) -> None:
        try:
            spool.release(token)
        except redis.RedisError:
            self._mark_redis_down()  # the lock expires by itself

    def _redis_has_items(self) -> bool:
        if self._redis_spool is None or not self._redis_usable():
            return False
        return self._redis_spool.pending() > 0

    def _redis_batch(self, token: str | None) -> tuple[int, list[PendingEvent]]:
        """(items read, the readable events among them), oldest first."""
        if token is None or self._redis_spool is None:
            return 0, []
        lines = self._redis_spool.read(FLUSH_BATCH)
        return len(lines), list(parse_lines(lines))

    def _trim(self, token: str | None, count: int) -> bool:
        if token is None or self._redis_spool is None:
            return False
        return self._redis_spool.trim(token, count)

    # -- health memos ----------------------------------------------------------------------------

    def _db_usable(self) -> bool:
        return self._monotonic() >= self._db_down_until

    def _redis_usable(self) -> bool:
        return self._monotonic() >= self._redis_down_until

    def _mark_db_down(self) -> None:
        if self._db_usable():
            logger.warning("event log: database unavailable; spooling events")
        self._db_down_until = self._monotonic() + DOWN_MEMO_SECONDS

    def _mark_redis_down(self) -> None:
        if self._redis_usable():
            logger.warning("event log: redis unavailable; spooling events to %s", self._file_spool.path)
        self._redis_down_until = self._monotonic() + DOWN_MEMO_SECONDS


def _key(e: PendingEvent) -> tuple[datetime, int]:
    return e.sort_key


def _fail_fast(client: redis.Redis) -> redis.Redis:
    """A client on the same server that neither retries nor waits long.

    redis-py retries a refused connection ten times with backoff (seconds per call); the event log
    has a fallback of its own and must not stall the caller, so it gets its own pool without retries.
    """
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    for name in ("socket_timeout", "socket_connect_timeout"):
        kwargs[name] = min(kwargs.get(name) or REDIS_TIMEOUT, REDIS_TIMEOUT)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    try:
        return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))
    except (TypeError, ValueError):
        return client  # an unusual pool: keep the caller's client as it is


def _short_sqlite_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=2000")
    cursor.close()
