"""Gauges computed at scrape time from state the whole fleet shares: ``sync_state``, the beat schedule and
the event spools.

None of these is a per-process value, so prefork multiprocess mode does not apply to them: the exporter
reads them when it is scraped, and every worker reports the same truth (except the file spool, which
belongs to the worker's own host). A source that is unreadable is reported by an ``*_up`` gauge or a
missing sample, never by a made-up value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select
from sqlalchemy.pool import NullPool

from models import SyncState
from worker.infra.db import make_engine
from worker.infra.eventspool import FileSpool, RedisSpool
from worker.infra.metrics import PREFIX
from worker.infra.settings import Settings

logger = logging.getLogger("worker.infra.metrics")

DB_CONNECT_TIMEOUT = 2


@dataclass(frozen=True)
class SourceSuccess:
    source: str
    last_success_at: datetime | None
    last_full_success_at: datetime | None


SuccessReader = Callable[[], list[SourceSuccess]]


def database_success_reader(settings: Settings) -> SuccessReader:
    """Reads the two success times of every ``sync_state`` row (one small query per scrape)."""
    # No pool: nothing stays connected between scrapes, and prefork children forked from the process
    # that serves the metrics inherit no database socket.
    engine: Engine = make_engine(
        settings.database_url, connect_timeout=DB_CONNECT_TIMEOUT, poolclass=NullPool
    )
    table = SyncState.__table__
    query = select(table.c.source, table.c.last_success_at, table.c.last_full_success_at)

    def read() -> list[SourceSuccess]:
        with engine.connect() as conn:
            return [SourceSuccess(*row) for row in conn.execute(query)]

    return read


class SyncStateCollector(Collector):
    """When each source last succeeded, from ``sync_state`` (partial runs count: they stored their pages)."""

    def __init__(self, read: SuccessReader) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return []  # never touch the database at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_sync_state_up", "1 when the sync_state table was readable.")
        last = GaugeMetricFamily(
            f"{PREFIX}_sync_last_success_timestamp_seconds",
            "When a run of the source (any mode) last ended succeeded or partial, in Unix seconds.",
            labels=["source"],
        )
        full = GaugeMetricFamily(
            f"{PREFIX}_sync_last_full_success_timestamp_seconds",
            "When a full run of the source last ended succeeded or partial, in Unix seconds.",
            labels=["source"],
        )
        try:
            rows = self._read()
        except Exception as exc:
            logger.warning("sync state unreadable for metrics", extra={"error": type(exc).__name__})
            rows = None
        up.add_metric([], 0 if rows is None else 1)
        for row in rows or []:
            if row.last_success_at is not None:
                last.add_metric([row.source], row.last_success_at.timestamp())
            if row.last_full_success_at is not None:
                full.add_metric([row.source], row.last_full_success_at.timestamp())
        yield from (up, last, full)


class SyncIntervalCollector(Collector):
    """The schedule beat follows, so an alert can say "no success within twice the interval"."""

    def __init__(
        self, intervals: Mapping[tuple[str, str], float] | Callable[[], Mapping[tuple[str, str], float]]
    ) -> None:
        # A mapping, or what reads the current one (sources come and go while the exporter runs).
        self._intervals = intervals if callable(intervals) else (lambda fixed=dict(intervals): fixed)

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            f"{PREFIX}_sync_interval_seconds",
            "Longest time beat leaves between two scheduled runs of a source, by mode.",
            labels=["source", "mode"],
        )
        for (source, mode), seconds in sorted(self._intervals().items()):
            gauge.add_metric([source, mode], seconds)
        yield gauge


class EventSpoolCollector(Collector):
    """Events recorded while the database was down and not yet written to ``event_log``."""

    def __init__(self, count_redis: Callable[[], int], count_file: Callable[[], int]) -> None:
        self._counters = {"redis": count_redis, "file": count_file}

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            f"{PREFIX}_event_spool_events",
            "Events waiting to be written to event_log: the Redis list (fleet-wide) or this host's file.",
            labels=["spool"],
        )
        for spool, count in self._counters.items():
            try:
                gauge.add_metric([spool], count())
            except (redis.RedisError, OSError) as exc:
                logger.warning(
                    "event spool unreadable for metrics", extra={"spool": spool, "error": type(exc).__name__}
                )
        yield gauge


def scrape_collectors(
    settings: Settings,
    client: redis.Redis,
    intervals: Mapping[tuple[str, str], float] | Callable[[], Mapping[tuple[str, str], float]],
) -> list[Collector]:
    """The collectors a worker's exporter adds next to the breaker gauge."""
    redis_spool = RedisSpool(client, settings.redis_key_prefix)
    file_spool = FileSpool(Path(settings.event_spool_path))
    return [
        SyncStateCollector(database_success_reader(settings)),
        SyncIntervalCollector(intervals),
        EventSpoolCollector(redis_spool.pending, file_spool.pending),
    ]
