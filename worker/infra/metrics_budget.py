"""The request budget of each upstream host as metrics, read from Redis at scrape time.

Like the breaker state, a budget belongs to the fleet, not to a process: every exporter reads the same
hash in Redis and reports the same values, so prefork multiprocess mode does not apply. Refusals and
cuts only grow (until an operator's `syncworker budgets reset`), so they are counters, and Prometheus's
``rate()``/``increase()`` handle that reset like a process restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.budget import BudgetStats, list_budgets
from worker.infra.metrics import PREFIX
from worker.infra.settings import Settings

logger = logging.getLogger("worker.infra.metrics")

# Every host's budget, and Redis's clock then (the one its pauses are set on).
BudgetReader = Callable[[], tuple[list[BudgetStats], float]]


def redis_budget_reader(
    settings: Settings, client: redis.Redis, ceilings: Callable[[], Mapping[str, float]]
) -> BudgetReader:
    """Reads every host's hash; ``ceilings`` gives the configured hosts (host -> ceiling) at each scrape."""

    def read() -> tuple[list[BudgetStats], float]:
        stats = list_budgets(client, settings.redis_key_prefix, ceilings())
        seconds, micros = client.time()
        return stats, seconds + micros / 1e6

    return read


class BudgetCollector(Collector):
    """``syncworker_budget_*{host}``: rate, ceiling in force, pause, refusals and cuts of each host."""

    def __init__(self, read: BudgetReader) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return []  # hosts are only known at scrape time; never read Redis at registration

    def collect(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily(
            f"{PREFIX}_budget_rate",
            "Requests per second the whole fleet may send the host now, as its refusals taught it.",
            labels=["host"],
        )
        ceiling = GaugeMetricFamily(
            f"{PREFIX}_budget_ceiling",
            "The host's ceiling in force, requests per second: the operator's, else the configured one.",
            labels=["host"],
        )
        paused = GaugeMetricFamily(
            f"{PREFIX}_budget_paused",
            "1 while a Retry-After of the host pauses every call to it.",
            labels=["host"],
        )
        throttled = CounterMetricFamily(
            f"{PREFIX}_budget_throttled",
            "Calls the host refused to the fleet (a 429, or a 503 with Retry-After).",
            labels=["host"],
        )
        cuts = CounterMetricFamily(
            f"{PREFIX}_budget_cuts", "Times the host's refusals cut the fleet's rate.", labels=["host"]
        )
        try:
            stats, now = self._read()
        except Exception as exc:
            # The families stay on the page without samples; the breaker's store gauge says Redis is down.
            logger.warning("request budgets unreadable for metrics", extra={"error": type(exc).__name__})
            stats, now = [], 0.0
        for s in stats:
            # A host nothing has called yet (no rate learned) is allowed its ceiling.
            current = s.rate if s.rate is not None else s.ceiling
            if current is not None:
                rate.add_metric([s.host], current)
            if s.ceiling is not None:
                ceiling.add_metric([s.host], s.ceiling)
            is_paused = s.paused_until is not None and s.paused_until > now
            paused.add_metric([s.host], 1.0 if is_paused else 0.0)
            throttled.add_metric([s.host], s.throttled)
            cuts.add_metric([s.host], s.cuts)
        yield from (rate, ceiling, paused, throttled, cuts)
