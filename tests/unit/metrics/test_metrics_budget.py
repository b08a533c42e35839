"""The request budget gauges and counters, read from (fake) Redis at scrape time."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.budget import budget_key, set_ceiling
from worker.infra.metrics_budget import BudgetCollector, BudgetReader, redis_budget_reader

PREFIX = "sw-budget-metrics"
FAMILIES = {
    "syncworker_budget_rate": "gauge",
    "syncworker_budget_ceiling": "gauge",
    "syncworker_budget_paused": "gauge",
    "syncworker_budget_throttled": "counter",
    "syncworker_budget_cuts": "counter",
}


def scrape(read: BudgetReader) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
    """Family name -> type, and (sample name, host) -> value, through the exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BudgetCollector(read))
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    types = {f.name: f.type for f in families}
    values = {(s.name, s.labels["host"]): s.value for f in families for s in f.samples}
    return types, values


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_each_host_reports_rate_ceiling_pause_refusals_and_cuts(
    settings_factory: Any, client: fakeredis.FakeRedis
) -> None:
    settings = settings_factory(redis_key_prefix=PREFIX)
    now, _ = client.time()
    client.hset(budget_key(PREFIX, "shop.test"), mapping={
        "tat": str(now), "rate": "6.5", "throttled": "9", "cuts": "3", "paused_until": str(now + 60),
    })  # fmt: skip
    client.hset(budget_key(PREFIX, "erp.test"), mapping={"paused_until": str(now - 60), "throttled": "1"})
    set_ceiling(client, PREFIX, "erp.test", 4)
    configured = {"shop.test": 25.0, "erp.test": 10.0, "idle.test": 25.0}

    types, got = scrape(redis_budget_reader(settings, client, lambda: configured))

    assert types == FAMILIES
    assert got == {
        ("syncworker_budget_rate", "shop.test"): 6.5,
        ("syncworker_budget_rate", "erp.test"): 4.0,  # no rate learned: the operator's ceiling
        ("syncworker_budget_rate", "idle.test"): 25.0,  # never called: the configured ceiling
        ("syncworker_budget_ceiling", "shop.test"): 25.0,
        ("syncworker_budget_ceiling", "erp.test"): 4.0,
        ("syncworker_budget_ceiling", "idle.test"): 25.0,
        ("syncworker_budget_paused", "shop.test"): 1.0,
        ("syncworker_budget_paused", "erp.test"): 0.0,  # its pause is over
        ("syncworker_budget_paused", "idle.test"): 0.0,
        ("syncworker_budget_throttled_total", "shop.test"): 9.0,
        ("syncworker_budget_throttled_total", "erp.test"): 1.0,
        ("syncworker_budget_throttled_total", "idle.test"): 0.0,
        ("syncworker_budget_cuts_total", "shop.test"): 3.0,
        ("syncworker_budget_cuts_total", "erp.test"): 0.0,
        ("syncworker_budget_cuts_total", "idle.test"): 0.0,
    }


def test_the_configured_hosts_are_read_at_each_scrape(
    settings_factory: Any, client: fakeredis.FakeRedis
) -> None:
    settings = settings_factory(redis_key_prefix=PREFIX)
    configured: dict[str, float] = {}
    read = redis_budget_reader(settings, client, lambda: dict(configured))
    assert scrape(read)[1] == {}
    configured["new.test"] = 5.0  # a source added while the exporter runs
    assert scrape(read)[1][("syncworker_budget_ceiling", "new.test")] == 5.0


def test_an_unreadable_store_keeps_the_families_without_samples() -> None:
    def unreachable() -> Any:
        raise ConnectionError("refused")

    types, got = scrape(unreachable)
    assert types == FAMILIES
    assert got == {}
