"""Metric helpers and the breaker-state collector, read back through the exposition format."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from worker.breaker import build_breaker
from worker.infra import metrics


class NoEvents:
    def record(self, event_type: str, **kwargs: Any) -> None:
        return None


def samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(registry: Any, name: str, **labels: str) -> float:
    return samples(registry).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def test_upstream_calls_count_failures_and_latency_but_not_rejections() -> None:
    reg = metrics.build_registry(None)
    before = value(reg, "syncworker_upstream_failures_total", upstream="t-woo", operation="list")
    metrics.observe_upstream_call("t-woo", "list", "ok", 0.2)
    metrics.observe_upstream_call("t-woo", "list", "retriable", 1.5)
    metrics.observe_upstream_call("t-woo", "list", "rejected", 0.0)
    assert (
        value(reg, "syncworker_upstream_calls_total", upstream="t-woo", operation="list", outcome="ok") == 1
    )
    assert value(reg, "syncworker_upstream_failures_total", upstream="t-woo", operation="list") == before + 1
    # Rejected calls never reached the upstream: no latency sample for them.
    assert (
        value(reg, "syncworker_upstream_call_duration_seconds_count", upstream="t-woo", operation="list") == 2
    )


def test_sync_runs_record_outcome_duration_and_nonzero_counts() -> None:
    reg = metrics.build_registry(None)
    metrics.record_sync_run("t-src", "full", "succeeded", 12.5, {"fetched": 10, "inserted": 4, "failed": 0})
    assert value(reg, "syncworker_sync_runs_total", source="t-src", mode="full", status="succeeded") == 1
    assert value(reg, "syncworker_sync_run_duration_seconds_sum", source="t-src", mode="full") == 12.5
    assert value(reg, "syncworker_sync_records_total", source="t-src", kind="fetched") == 10
    assert ("syncworker_sync_records_total", (("kind", "failed"), ("source", "t-src"))) not in samples(reg)


def test_transitions_and_event_writes_are_counted() -> None:
    reg = metrics.build_registry(None)
    metrics.record_breaker_transition("t-brk", "closed", "open")
    metrics.record_event_written("t.sync.failed")
    metrics.record_event_written("t.sync.failed")
    assert (
        value(
            reg, "syncworker_breaker_transitions_total", breaker="t-brk", from_state="closed", to_state="open"
        )
        == 1
    )
    assert value(reg, "syncworker_event_log_writes_total", event_type="t.sync.failed") == 2


def test_breaker_gauge_follows_the_shared_state(settings_factory: Any) -> None:
    # One breaker per configured source, named <kind>:<source>.
    settings = settings_factory(
        woocommerce_url="https://shop.test", woocommerce_consumer_key="ck_0123456789abcdef",
        woocommerce_consumer_secret="cs_0123456789abcdef", odoo_url="https://erp.test", odoo_db="erp",
        odoo_username="sync@erp.test", odoo_api_key="odoo-key-0123456789",
    )  # fmt: skip
    woo, odoo = "woocommerce:woocommerce-products", "odoo:odoo-suppliers"
    client = fakeredis.FakeRedis()
    reg = metrics.build_registry(metrics.redis_state_reader(settings, client))
    assert value(reg, "syncworker_breaker_state", breaker=woo, state="closed") == 1
    assert value(reg, "syncworker_breaker_store_up") == 1

    build_breaker(woo, settings, client, NoEvents()).force_open("ops")

    assert value(reg, "syncworker_breaker_state", breaker=woo, state="forced_open") == 1
    assert value(reg, "syncworker_breaker_state", breaker=woo, state="closed") == 0
    assert value(reg, "syncworker_breaker_state", breaker=odoo, state="closed") == 1


def test_unreadable_breaker_store_reports_store_down_and_no_states() -> None:
    def unreachable() -> dict[str, str]:
        raise ConnectionError("refused")

    reg = metrics.build_registry(unreachable)
    got = samples(reg)
    assert value(reg, "syncworker_breaker_store_up") == 0
    assert not any(name == "syncworker_breaker_state" for name, _ in got)


def test_the_interval_breaker_and_budget_gauges_follow_sources_added_and_disabled(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet
    from pydantic import SecretStr

    from worker.celeryapp import deps
    from worker.celeryapp.schedule import sync_intervals
    from worker.infra.db import upgrade_database
    from worker.infra.metrics_budget import BudgetCollector, redis_budget_reader
    from worker.infra.metrics_scrape import SyncIntervalCollector
    from worker.sources import store
    from worker.sources.config import SourceConfig
    from worker.sources.secrets import CredentialCipher

    key = Fernet.generate_key().decode()
    settings = settings_factory(beat_sources_refresh_seconds=0.001, sources_encryption_keys=key)
    upgrade_database(settings.database_url)
    monkeypatch.setattr(deps, "_load_settings", lambda: settings)
    deps.reset()
    fleet = metrics.FleetView(settings, sync_intervals)
    client = fakeredis.FakeRedis()
    registry = metrics.build_registry(metrics.redis_state_reader(settings, client, fleet.policies))
    registry.register(SyncIntervalCollector(fleet.intervals))
    registry.register(BudgetCollector(redis_budget_reader(settings, client, fleet.budget_ceilings)))
    assert value(registry, "syncworker_sync_interval_seconds", source="shop-a", mode="incremental") == 0
    shop = SourceConfig(name="shop-a", kind="woocommerce", url="https://shop-a.shops.test",
                        credentials={"consumer_key": SecretStr("ck_0123456789"),
                                     "consumer_secret": SecretStr("cs_0123456789")},
                        incremental_interval_seconds=120)  # fmt: skip
    with deps.get_session_factory()() as session, session.begin():
        store.add(session, shop, CredentialCipher([key]))
    # Added while the exporter runs: the staleness alert gets its interval, the breaker its gauge.
    assert value(registry, "syncworker_sync_interval_seconds", source="shop-a", mode="incremental") == 120
    assert value(registry, "syncworker_breaker_state", breaker="woocommerce:shop-a", state="closed") == 1
    assert value(registry, "syncworker_budget_ceiling", host="shop-a.shops.test") == 25
    with deps.get_session_factory()() as session, session.begin():
        store.set_enabled(session, "shop-a", False)
    # Switched off on purpose: no interval, so no alert for a source that is not meant to run.
    assert (
        "syncworker_sync_interval_seconds",
        (("mode", "incremental"), ("source", "shop-a")),
    ) not in samples(registry)
    # A disabled source calls nobody: its host has no configured budget any more.
    assert ("syncworker_budget_ceiling", (("host", "shop-a.shops.test"),)) not in samples(registry)
    deps.reset()
