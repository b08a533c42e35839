"""`syncworker budgets` on the real Redis and event log, seen by the worker's exporter over a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from click.testing import CliRunner, Result
from ops_env import free_port
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from worker.budget import budget_key
from worker.cli import main
from worker.cli.output import CliState
from worker.infra import metrics
from worker.infra.db import make_engine, upgrade_database
from worker.infra.settings import Settings

pytestmark = pytest.mark.integration
SHOP = "shop.shops.test"
UPSTREAMS = {
    "woocommerce_url": f"https://{SHOP}", "woocommerce_consumer_key": "ck_0123456789abcdef",
    "woocommerce_consumer_secret": "cs_0123456789abcdef",
}  # fmt: skip


@pytest.fixture
def fleet(settings_factory: Any, redis_url: str, monkeypatch: Any) -> Iterator[tuple[Settings, str]]:
    """Settings on the real Redis and a migrated database, and the exporter's URL."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    port = free_port()
    settings = settings_factory(redis_url=redis_url, metrics_port=port, **UPSTREAMS)
    upgrade_database(settings.database_url)
    server = metrics.start_metrics_server(settings, addr="127.0.0.1")
    try:
        yield settings, f"http://127.0.0.1:{port}/metrics"
    finally:
        metrics.stop_metrics_server(server)
        client = redis.Redis.from_url(redis_url)
        client.delete(*client.keys(f"{settings.redis_key_prefix}:*") or ["-"])
        client.close()


def budgets(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["budgets", *args], obj=CliState(settings=settings))


def scraped(url: str) -> dict[str, float]:
    """Sample name -> value for the shop's host."""
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.labels.get("host") == SHOP
    }


def test_operator_commands_change_the_fleets_budget_and_are_audited(
    fleet: tuple[Settings, str], redis_url: str
) -> None:
    settings, url = fleet
    assert scraped(url)["syncworker_budget_ceiling"] == 25.0
    assert budgets(settings, "set", SHOP, "6", "--actor", "alice").exit_code == 0
    got = scraped(url)
    assert (got["syncworker_budget_ceiling"], got["syncworker_budget_rate"]) == (6.0, 6.0)

    # What the host's refusals leave in its hash (written by the breaker's scripts in production).
    client = redis.Redis.from_url(redis_url)
    now, _ = client.time()
    client.hset(budget_key(settings.redis_key_prefix, SHOP), mapping={
        "rate": "1.5", "throttled": "5", "cuts": "2", "paused_until": str(now + 120),
    })  # fmt: skip
    client.close()
    got = scraped(url)
    assert got["syncworker_budget_rate"] == 1.5 and got["syncworker_budget_paused"] == 1.0
    assert (got["syncworker_budget_throttled_total"], got["syncworker_budget_cuts_total"]) == (5.0, 2.0)
    [listed] = json.loads(budgets(settings, "list", "--json").stdout)
    assert (listed["host"], listed["paused"], listed["operator_ceiling"]) == (SHOP, True, 6.0)

    assert budgets(settings, "reset", SHOP, "--actor", "bob").exit_code == 0
    got = scraped(url)
    assert got["syncworker_budget_paused"] == 0.0 and got["syncworker_budget_throttled_total"] == 0.0
    assert got["syncworker_budget_ceiling"] == 6.0  # the operator's ceiling outlives a reset
    assert budgets(settings, "clear", SHOP, "--actor", "carol").exit_code == 0
    assert scraped(url)["syncworker_budget_ceiling"] == 25.0

    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_type, aggregate_id, metadata FROM event_log ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    actors = [(m if isinstance(m, dict) else json.loads(m))["actor"] for _, _, m in rows]
    assert [(t, a) for t, a, _ in rows] == [
        ("budget.ceiling_set", SHOP),
        ("budget.reset", SHOP),
        ("budget.ceiling_cleared", SHOP),
    ]
    assert actors == ["alice", "bob", "carol"]


def test_an_unreachable_redis_fails_the_command(settings_factory: Any) -> None:
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0", **UPSTREAMS)
    result = budgets(settings, "set", SHOP, "6")
    assert result.exit_code == 1
    assert "budget store unreachable" in result.stderr
