"""deploy/: the alert rules and Prometheus config pass promtool, every query reads a metric the worker's
exporter really serves (scraped over HTTP, with the real database and Redis behind it), and the
dashboard loads. The alerts firing during a real outage is tests/e2e/test_e2e_alerts.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from monitoring_files import (
    DASHBOARD,
    PROMETHEUS_CONFIG,
    PROMETHEUS_SERIES,
    RULES,
    dashboard,
    every_expression,
    exported_sample_names,
    metric_names,
    run_promtool,
)
from ops_env import free_port
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from worker.infra import metrics
from worker.infra.settings import Settings

UPSTREAMS = {
    "woocommerce_url": "http://127.0.0.1:9",
    "woocommerce_consumer_key": "ck_0123456789abcdef",
    "woocommerce_consumer_secret": "cs_0123456789abcdef",
    "odoo_url": "http://127.0.0.1:9",
    "odoo_db": "odoo",
    "odoo_username": "sync@localhost",
    "odoo_api_key": "0123456789abcdef",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def test_promtool_accepts_the_rules_and_the_config() -> None:
    for args in (("check", "rules", str(RULES)), ("check", "config", str(PROMETHEUS_CONFIG))):
        result = run_promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("== 0", "== ", 1))
    assert run_promtool("check", "rules", str(broken)).returncode != 0


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (source) (increase(syncworker_sync_runs_total{status="failed"}[30m])) > 0',
         {"syncworker_sync_runs_total"}),
        ('time() - max by (source) (a_seconds) > 2 * max by (source) (b_seconds{mode="full"})',
         {"a_seconds", "b_seconds"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
        ('absent(up{job="syncworker"} == 1)', {"up"}),
        ("a unless on (source) b and on () max(c) == 1e3", {"a", "b", "c"}),
        ("sum(rate(x_total[5m] offset 1h)) without (instance) / ignoring (le) group_left (k) y",
         {"x_total", "y"}),
    ],
    ids=["increase", "time-arithmetic", "histogram", "absent", "set-operators", "offset-grouping"],
)  # fmt: skip
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.fixture
def exporter(
    settings_factory: Any, redis_url: str, clean_pg: Engine, migrated_pg_url: str, monkeypatch: Any
) -> Iterator[tuple[Settings, str]]:
    """The worker's exporter on a free port, both upstreams configured, single-process mode."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    port = free_port()
    settings = settings_factory(
        redis_url=redis_url, database_url=migrated_pg_url, metrics_port=port, **UPSTREAMS
    )
    server = metrics.start_metrics_server(settings, addr="127.0.0.1")
    try:
        yield settings, f"http://127.0.0.1:{port}/metrics"
    finally:
        metrics.stop_metrics_server(server)
        client = redis.Redis.from_url(redis_url)
        client.delete(*client.keys(f"{settings.redis_key_prefix}:*") or ["-"])
        client.close()


def scrape(url: str) -> str:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.text


def samples(exposition: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_every_rule_and_panel_reads_only_metrics_the_worker_exports(exporter: tuple[Settings, str]) -> None:
    exported = exported_sample_names(scrape(exporter[1]))
    used = {name for expr in every_expression() for name in metric_names(expr)}
    assert "syncworker_sync_runs_total" in used  # the extraction found something to check
    assert used - PROMETHEUS_SERIES - exported == set()


def test_scrape_time_gauges_read_sync_state_the_schedule_and_both_spools(
    exporter: tuple[Settings, str], clean_pg: Engine, redis_url: str
) -> None:
    settings, url = exporter
    succeeded = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    with clean_pg.begin() as conn:
        conn.execute(
            text("INSERT INTO sync_state (source, last_success_at) VALUES ('woocommerce-products', :at)"),
            {"at": succeeded},
        )
    client = redis.Redis.from_url(redis_url)
    client.rpush(f"{settings.redis_key_prefix}:events:pending", "{}", "{}")
    client.close()
    # Three whole events and one torn by a crash mid-append: only whole lines are waiting events.
    Path(settings.event_spool_path).write_text('{}\n{}\n{}\n{"half')

    got = samples(scrape(url))

    assert got[("syncworker_sync_state_up", labels())] == 1
    woo = labels(source="woocommerce-products")
    assert got[("syncworker_sync_last_success_timestamp_seconds", woo)] == succeeded.timestamp()
    assert ("syncworker_sync_last_full_success_timestamp_seconds", woo) not in got  # never had one
    assert ("syncworker_sync_last_success_timestamp_seconds", labels(source="odoo-suppliers")) not in got
    interval = "syncworker_sync_interval_seconds"
    assert got[(interval, labels(source="odoo-suppliers", mode="incremental"))] == 300
    assert got[(interval, labels(source="woocommerce-products", mode="full"))] == 86400  # 0 3 * * *
    assert got[("syncworker_event_spool_events", labels(spool="redis"))] == 2
    assert got[("syncworker_event_spool_events", labels(spool="file"))] == 3
    # Outcomes exist at 0 before any run, so the first failure is an increase Prometheus can see.
    failed = labels(source="odoo-suppliers", mode="incremental", status="failed")
    assert ("syncworker_sync_runs_total", failed) in got


def test_an_unreachable_database_reads_as_sync_state_down(
    settings_factory: Any, redis_url: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    port = free_port()
    nowhere = f"postgresql://syncworker@127.0.0.1:{free_port()}/syncworker"
    settings = settings_factory(redis_url=redis_url, database_url=nowhere, metrics_port=port, **UPSTREAMS)
    server = metrics.start_metrics_server(settings, addr="127.0.0.1")
    try:
        got = samples(scrape(f"http://127.0.0.1:{port}/metrics"))
    finally:
        metrics.stop_metrics_server(server)
    assert got[("syncworker_sync_state_up", labels())] == 0
    assert not [key for key in got if key[0] == "syncworker_sync_last_success_timestamp_seconds"]
    assert got[("syncworker_breaker_store_up", labels())] == 1  # the rest of the page is still served


def test_the_dashboard_loads_and_every_panel_has_a_query() -> None:
    doc = dashboard()
    assert doc["uid"] and doc["title"] and DASHBOARD.suffix == ".json"
    panels = doc["panels"]
    assert len(panels) >= 8
    assert len({p["title"] for p in panels}) == len(panels)
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["type"] == "prometheus", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
