"""Beat for a fleet of sources: RedBeat, whose entries follow the ``sources`` table without a restart,
and which sends nothing for a source whose breaker is open.

Every ``BEAT_SOURCES_REFRESH_SECONDS`` the leading beat reads the configured sources and creates, changes or
removes their entries in Redis (``sync:<source>:incremental`` and ``sync:<source>:full``). A new entry's
first tick is spread over its interval by a hash of its name, so 500 sources added at once do not all
fire in the same second. An entry of a source whose breaker is open (and not yet due for a probe) is
advanced without sending anything: the skip costs one Redis read in beat and an event, no worker time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from typing import Any

from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis

from worker.celeryapp.config import SYNC_TASK, queue_for
from worker.celeryapp.schedule import source_entries
from worker.infra.settings import Settings, get_settings
from worker.sources.config import SourceConfig

log = logging.getLogger(__name__)

ENTRY_PREFIX = "sync:"
SKIP_EVENT = "sync.skipped_breaker_open"


def entry_digest(entry: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def spread(name: str, period: float) -> float:
    """A stable offset in [0, period) for a source: where in its interval its first tick falls."""
    fraction = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return fraction * period


class SourceEntries:
    """Keeps the sources' RedBeat entries equal to the configured sources."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        ensure_conf(app)  # RedBeat's key names, as its scheduler sets them up

    @property
    def _index_key(self) -> str:
        # name -> digest of its definition: an unchanged entry costs nothing to check.
        return f"{self.app.redbeat_conf.key_prefix}sync-index"

    def sync(self, sources: list[SourceConfig]) -> tuple[int, int]:
        """Create or change the entries of enabled sources, remove the others; returns (saved, removed)."""
        client = get_redis(self.app)
        wanted: dict[str, tuple[dict[str, Any], float]] = {}
        for source in sources:
            if source.enabled:
                for name, entry in source_entries(source, self.settings).items():
                    wanted[name] = (entry, self._period(entry))
        known = {_text(k): _text(v) for k, v in client.hgetall(self._index_key).items()}
        present = self._present(list(wanted))
        saved = 0
        for name, (entry, period) in wanted.items():
            digest = entry_digest(entry)
            if known.get(name) == digest and present[name]:
                continue
            self._save(name, entry, period)
            client.hset(self._index_key, name, digest)
            saved += 1
        removed = 0
        for name in set(known) - set(wanted):
            RedBeatSchedulerEntry(name, app=self.app).delete()
            client.hdel(self._index_key, name)
            removed += 1
        return saved, removed

    def _present(self, names: list[str]) -> dict[str, bool]:
        """Whether each entry is in the schedule (the index alone could outlive an entry deleted by hand)."""
        pipe = get_redis(self.app).pipeline(transaction=False)
        for name in names:
            pipe.zscore(
                self.app.redbeat_conf.schedule_key, RedBeatSchedulerEntry.generate_key(self.app, name)
            )
        return {name: score is not None for name, score in zip(names, pipe.execute(), strict=True)}

    def _period(self, entry: dict[str, Any]) -> float:
        schedule = entry["schedule"]
        return float(schedule) if isinstance(schedule, int | float) else 0.0

    def _save(self, name: str, entry: dict[str, Any], period: float) -> None:
        key = RedBeatSchedulerEntry.generate_key(self.app, name)
        try:
            last_run_at = RedBeatSchedulerEntry.from_key(key, app=self.app).last_run_at
        except KeyError:
            # A new entry: its first tick falls somewhere in its first interval, not now for everyone.
            now = dt.datetime.now(dt.UTC)
            last_run_at = now - dt.timedelta(seconds=spread(name, period)) if period else now
        beat_entry = RedBeatSchedulerEntry(
            name,
            entry["task"],
            entry["schedule"],
            kwargs=entry["kwargs"],
            options=entry["options"],
            app=self.app,
            last_run_at=last_run_at,
        )
        beat_entry.save()
        # save() keeps an existing entry's meta; a changed definition keeps its last run too.
        get_redis(self.app).zadd(self.app.redbeat_conf.schedule_key, {beat_entry.key: due_score(beat_entry)})


def due_score(entry: RedBeatSchedulerEntry) -> float:
    """When the entry is next due, as RedBeat sorts its schedule.

    Not ``entry.score``: RedBeat adds the remaining time (which celery measures from now) to
    ``last_run_at``, so an entry last run ``s`` seconds ago would sort ``s`` seconds early and be loaded
    and checked on every tick until it is really due.
    """
    now = dt.datetime.now(dt.UTC)
    if entry.last_run_at is None:
        return now.timestamp()
    remaining: dt.timedelta | None = entry.schedule.remaining_estimate(entry.last_run_at)
    if remaining is None:
        return (now + dt.timedelta(days=366)).timestamp()  # no firing ahead; a refresh re-saves it
    return (now + max(remaining, dt.timedelta(0))).timestamp()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SourceScheduler(RedBeatScheduler):  # type: ignore[misc]
    """``beat_scheduler``: RedBeat with the sources' entries kept in sync and open breakers skipped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._synced_at = float("-inf")
        self._sources: dict[str, SourceConfig] = {}
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        super().setup_schedule()
        self._sync_sources()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if time.monotonic() - self._synced_at >= get_settings().beat_sources_refresh_seconds:
            self._sync_sources()
        interval: float = super().tick(*args, **kwargs)
        return interval

    def _sync_sources(self) -> None:
        self._synced_at = time.monotonic()
        try:
            from worker.celeryapp.deps import get_session_factory
            from worker.sources.catalog import all_sources

            sources = all_sources(get_settings(), get_session_factory(), credentials=False)
            saved, removed = SourceEntries(self.app, get_settings()).sync(sources)
        except Exception:
            # The database or Redis is away: the entries in Redis keep running as they are.
            log.warning("beat: could not sync the sources' schedule entries", exc_info=True)
            return
        self._sources = {s.name: s for s in sources}
        if saved or removed:
            log.info("beat: source schedule entries synced", extra={"saved": saved, "removed": removed})

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        source = (entry.kwargs or {}).get("source")
        if entry.task == SYNC_TASK and source is not None and self._breaker_open(source):
            if advance:
                self.reserve(entry)
            self._record_skip(source, bool(entry.kwargs.get("full")))
            return None
        return super().apply_async(entry, producer, advance, **kwargs)

    def _breaker_open(self, name: str) -> bool:
        source = self._sources.get(name)
        if source is None:
            return False
        try:
            from worker.breaker import list_breakers
            from worker.celeryapp.deps import get_breaker_redis
            from worker.sources.catalog import breaker_policies

            [stats] = list_breakers(
                get_settings(), get_breaker_redis(), breaker_policies(get_settings(), [source])
            )
        except Exception:
            return False  # unknown: send, and let the worker's breaker decide
        if str(stats.state) == "forced_open":  # an operator closed it to traffic until they say otherwise
            return True
        due = stats.next_attempt_at
        return str(stats.state) == "open" and due is not None and due > time.time()

    def _record_skip(self, source: str, full: bool) -> None:
        from worker.celeryapp.deps import get_event_log

        log.info("beat: breaker open, tick skipped", extra={"source": source, "full": full})
        get_event_log().record(
            SKIP_EVENT,
            aggregate_id=source,
            payload={"full": full, "by": "beat", "queue": queue_for(full)},
        )
