"""Prometheus metrics. Other modules call the ``record_*`` / ``observe_*`` helpers, never the registry.

Counters and histograms work with prefork workers through prometheus-client's multiprocess mode: when
``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus-client reads the variable itself, at import), every
process writes its samples to files there and the exporter in the worker's main process sums them.
The breaker state is not a per-process value at all: it lives in Redis for the whole fleet, so a
collector reads it at scrape time and any process's exporter reports the same, current truth; so do the
gauges of ``worker.infra.metrics_scrape`` (last successes, schedule, event spools) and the request budgets
of ``worker.infra.metrics_budget``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from worker.infra.settings import Settings

logger = logging.getLogger("worker.infra.metrics")

PREFIX = "syncworker"
BREAKER_STATES = ("closed", "open", "half_open", "forced_open", "forced_closed")
# Outcomes that say nothing about the upstream's health: it answered, or it was never called.
NOT_FAILURES = frozenset({"ok", "rejected"})
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)

BREAKER_TRANSITIONS = Counter(
    f"{PREFIX}_breaker_transitions",
    "Breaker state changes, by breaker and the states left and entered.",
    ["breaker", "from_state", "to_state"],
    registry=None,
)
UPSTREAM_CALLS = Counter(
    f"{PREFIX}_upstream_calls",
    "HTTP calls to an upstream by operation and outcome (ok, retriable, fatal, malformed, rejected...).",
    ["upstream", "operation", "outcome"],
    registry=None,
)
UPSTREAM_FAILURES = Counter(
    f"{PREFIX}_upstream_failures",
    "Upstream calls that failed (every outcome except ok and rejected).",
    ["upstream", "operation"],
    registry=None,
)
UPSTREAM_LATENCY = Histogram(
    f"{PREFIX}_upstream_call_duration_seconds",
    "Wall time of one upstream call, by operation.",
    ["upstream", "operation"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
SYNC_RUNS = Counter(
    f"{PREFIX}_sync_runs",
    "Finished sync runs by source, mode (full/incremental) and status.",
    ["source", "mode", "status"],
    registry=None,
)
BUDGET_WAITS = Histogram(
    f"{PREFIX}_budget_wait_seconds",
    "How long a call waited for its slot in its upstream host's request budget (calls that waited).",
    ["host"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
SYNC_DURATION = Histogram(
    f"{PREFIX}_sync_run_duration_seconds",
    "Wall time of one sync run.",
    ["source", "mode"],
    buckets=RUN_BUCKETS,
    registry=None,
)
SYNC_RECORDS = Counter(
    f"{PREFIX}_sync_records",
    "Records handled by sync runs, by what happened to them (fetched, inserted, updated...).",
    ["source", "kind"],
    registry=None,
)
EVENTS_WRITTEN = Counter(
    f"{PREFIX}_event_log_writes",
    "Rows written to event_log, by event type.",
    ["event_type"],
    registry=None,
)
PROCESS_METRICS: tuple[Collector, ...] = (
    BREAKER_TRANSITIONS,
    UPSTREAM_CALLS,
    UPSTREAM_FAILURES,
    UPSTREAM_LATENCY,
    BUDGET_WAITS,
    SYNC_RUNS,
    SYNC_DURATION,
    SYNC_RECORDS,
    EVENTS_WRITTEN,
)


# -- helpers the rest of the code calls --------------------------------------------------------------


def record_breaker_transition(name: str, old: str, new: str) -> None:
    BREAKER_TRANSITIONS.labels(name, str(old), str(new)).inc()


def observe_budget_wait(host: str, seconds: float) -> None:
    BUDGET_WAITS.labels(host).observe(max(0.0, seconds))


def observe_upstream_call(upstream: str, operation: str, outcome: str, seconds: float) -> None:
    UPSTREAM_CALLS.labels(upstream, operation, outcome).inc()
    if outcome not in NOT_FAILURES:
        UPSTREAM_FAILURES.labels(upstream, operation).inc()
    if outcome != "rejected":
        UPSTREAM_LATENCY.labels(upstream, operation).observe(max(0.0, seconds))


def record_sync_run(
    source: str, mode: str, status: str, duration_seconds: float, counts: Mapping[str, int]
) -> None:
    SYNC_RUNS.labels(source, mode, str(status)).inc()
    SYNC_DURATION.labels(source, mode).observe(max(0.0, duration_seconds))
    for kind, value in counts.items():
        if value:
            SYNC_RECORDS.labels(source, kind).inc(value)


def record_event_written(event_type: str) -> None:
    EVENTS_WRITTEN.labels(event_type).inc()


def zero_sync_run_series(source_modes: Iterable[tuple[str, str]]) -> None:
    """Export every run outcome at 0 from the start.

    Prometheus's ``increase()`` needs a sample before the first increment: a ``failed`` series born
    at 1 would hide the first failed run from the alerts.
    """
    from worker.sync.outcome import RunStatus  # lazy: the sync package imports this module

    finished = [status.value for status in RunStatus if status is not RunStatus.RUNNING]
    for source, mode in source_modes:
        for status in finished:
            SYNC_RUNS.labels(source, mode, status)


# -- the fleet-wide breaker gauge ------------------------------------------------------------------


StateReader = Callable[[], dict[str, str]]


def redis_state_reader(
    settings: Settings, client: redis.Redis, policies: Callable[[], dict[str, Any]] | None = None
) -> StateReader:
    """Breaker states through the breaker's own read path (a read-only script per breaker).

    ``policies`` gives the current breakers (name -> policy); by default, the configured sources' at
    each scrape.
    """
    from worker.sources.catalog import fleet_breaker_policies

    current = policies or (lambda: fleet_breaker_policies(settings))

    def read() -> dict[str, str]:
        from worker.breaker import list_breakers

        stats = list_breakers(settings, client, current())
        if any(s.degraded for s in stats):
            msg = "breaker store unreachable"
            raise redis.ConnectionError(msg)
        return {s.name: str(s.state) for s in stats}

    return read


class BreakerStateCollector(Collector):
    """``syncworker_breaker_state{breaker,state}`` = 1 for the current state, read at scrape time."""

    def __init__(self, read_states: StateReader) -> None:
        self._read = read_states

    def describe(self) -> Iterable[Metric]:
        return []  # states are only known at scrape time; never read Redis at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{PREFIX}_breaker_store_up", "1 when the breaker state in Redis was readable."
        )
        try:
            states = self._read()
        except Exception as exc:
            logger.warning("breaker state unreadable for metrics", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gauge = GaugeMetricFamily(
            f"{PREFIX}_breaker_state",
            "1 for each breaker's current state (closed, open, half_open, forced_open, forced_closed).",
            labels=["breaker", "state"],
        )
        for name, current in sorted(states.items()):
            for state in BREAKER_STATES:
                gauge.add_metric([name, state], 1.0 if state == current else 0.0)
        yield gauge


# -- exposition -------------------------------------------------------------------------------------


def multiproc_dir() -> str | None:
    # prometheus-client itself reads this variable at import; the exporter must agree with it.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def build_registry(
    read_states: StateReader | None, *, scrape_time: Iterable[Collector] = ()
) -> CollectorRegistry:
    """What one scrape shows: every process's samples (multiprocess) or this one's, plus breakers and
    the other ``scrape_time`` gauges."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiproc_dir()
    if path:
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        for metric in PROCESS_METRICS:
            registry.register(metric)
    if read_states is not None:
        registry.register(BreakerStateCollector(read_states))
    for collector in scrape_time:
        registry.register(collector)
    return registry


def start_metrics_server(settings: Settings, *, addr: str = "0.0.0.0") -> Any | None:  # noqa: S104
    """Serve ``/metrics`` on ``settings.metrics_port`` (0 = off); ``stop_metrics_server`` ends it."""
    if not settings.metrics_port:
        return None
    from worker.breaker import breaker_redis
    from worker.celeryapp.schedule import sync_intervals
    from worker.infra.metrics_budget import BudgetCollector, redis_budget_reader
    from worker.infra.metrics_scrape import scrape_collectors

    client = breaker_redis(settings)
    fleet = FleetView(settings, sync_intervals)
    budgets = BudgetCollector(redis_budget_reader(settings, client, fleet.budget_ceilings))
    registry = build_registry(
        redis_state_reader(settings, client, fleet.policies),
        scrape_time=[*scrape_collectors(settings, client, fleet.intervals), budgets],
    )
    server, _thread = start_http_server(settings.metrics_port, addr=addr, registry=registry)
    logger.info("metrics exporter listening", extra={"port": settings.metrics_port})
    return server


class FleetView:
    """The configured sources as the exporter sees them, read at most every BEAT_SOURCES_REFRESH_SECONDS.

    A source added, disabled or removed shows in the interval, breaker and budget gauges as beat picks it
    up, so the staleness alert neither misses a new source nor keeps firing for one switched off on purpose.
    """

    def __init__(self, settings: Settings, intervals_of: Callable[[Settings, list[Any]], Any]) -> None:
        self._settings = settings
        self._intervals_of = intervals_of
        self._read_at = float("-inf")
        self._sources: list[Any] = []

    def sources(self) -> list[Any]:
        now = time.monotonic()
        if now - self._read_at >= self._settings.beat_sources_refresh_seconds:
            self._read_at = now
            self._sources = self._read()
            zero_sync_run_series(self._intervals_of(self._settings, self._sources))
        return self._sources

    def _read(self) -> list[Any]:
        from worker.sources.catalog import all_sources, environment_sources

        try:
            from worker.celeryapp.deps import get_session_factory

            return all_sources(self._settings, get_session_factory(), credentials=False)
        except Exception:
            logger.warning("metrics: sources unreadable; exporting the environment's only", exc_info=True)
            return environment_sources(self._settings)

    def intervals(self) -> dict[tuple[str, str], float]:
        intervals: dict[tuple[str, str], float] = self._intervals_of(self._settings, self.sources())
        return intervals

    def policies(self) -> dict[str, Any]:
        from worker.sources.catalog import breaker_policies

        return breaker_policies(self._settings, self.sources())

    def budget_ceilings(self) -> dict[str, float]:
        from worker.sources.catalog import budget_ceilings

        return budget_ceilings(self._settings, self.sources())


def stop_metrics_server(server: Any) -> None:
    server.shutdown()
    server.server_close()


def reset_multiproc_dir() -> None:
    """Empty the multiprocess directory: files of a previous run's dead processes would be summed in."""
    path = multiproc_dir()
    if not path:
        return
    directory = Path(path)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


def install_celery_metrics_hooks(settings: Settings) -> Callable[[], None]:
    """Connect the worker signals: fresh multiprocess files and the exporter at start, cleanup per child.

    Call it once where the worker's app is configured; returns a function that disconnects them.
    """
    from celery.signals import worker_init, worker_process_shutdown

    servers: list[Any] = []

    def on_worker_init(**_: Any) -> None:
        reset_multiproc_dir()
        servers.append(start_metrics_server(settings))

    def on_child_exit(pid: int | None = None, **_: Any) -> None:
        if multiproc_dir():
            mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

    worker_init.connect(on_worker_init, weak=False)
    worker_process_shutdown.connect(on_child_exit, weak=False)

    def uninstall() -> None:
        for server in servers:
            if server is not None:
                stop_metrics_server(server)
        worker_init.disconnect(on_worker_init)
        worker_process_shutdown.disconnect(on_child_exit)

    return uninstall
