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
