"""The metrics endpoint scraped over a real socket, and multiprocess sums across real processes."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import redis
import requests
from ops_env import clean_env, free_port
from prometheus_client.parser import text_string_to_metric_families

from worker.breaker import build_breaker
from worker.infra import metrics


class NoEvents:
    def record(self, event_type: str, **kwargs: Any) -> None:
        return None


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def state_of(sample: dict[Any, float], breaker: str) -> str:
    states = [
        dict(labels)["state"]
        for (name, labels), value in sample.items()
        if name == "syncworker_breaker_state" and dict(labels)["breaker"] == breaker and value == 1
    ]
    assert len(states) == 1, states
    return states[0]


def test_scraped_breaker_gauge_changes_with_the_fleet_state(
    settings_factory: Any, redis_url: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    port = free_port()
    settings = settings_factory(
        redis_url=redis_url, metrics_port=port, woocommerce_url="https://shop.shops.test",
        woocommerce_consumer_key="ck_0123456789abcdef", woocommerce_consumer_secret="cs_0123456789abcdef",
        odoo_url="https://erp.shops.test", odoo_db="erp", odoo_username="sync@shops.test",
        odoo_api_key="odoo-key-0123456789",
    )  # fmt: skip
    woo, odoo = "woocommerce:woocommerce-products", "odoo:odoo-suppliers"  # one breaker per source
    server = metrics.start_metrics_server(settings, addr="127.0.0.1")
    client = redis.Redis.from_url(redis_url)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert state_of(scrape(url), woo) == "closed"

        # Another process (here: another client) opens the breaker; the next scrape shows it.
        build_breaker(woo, settings, client, NoEvents()).force_open("test")
        after = scrape(url)
        assert state_of(after, woo) == "forced_open"
        assert state_of(after, odoo) == "closed"
        assert after[("syncworker_breaker_store_up", frozenset())] == 1

        build_breaker(woo, settings, client, NoEvents()).reset("test")
        assert state_of(scrape(url), woo) == "closed"
    finally:
        metrics.stop_metrics_server(server)
        client.delete(*client.keys(f"{settings.redis_key_prefix}:*") or ["-"])
        client.close()


def test_metrics_off_when_port_is_zero(settings_factory: Any) -> None:
    assert metrics.start_metrics_server(settings_factory(metrics_port=0)) is None


WRITER = """
from worker.infra import metrics
metrics.record_event_written("sync.failed")
metrics.record_sync_run("s", "full", "failed", 3.0, {"fetched": 5})
"""
READER = """
from prometheus_client import generate_latest
from worker.infra import metrics
print(generate_latest(metrics.build_registry(None)).decode())
"""


def test_multiprocess_mode_sums_every_process(tmp_path: Any) -> None:
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for _ in range(3):
        subprocess.run([sys.executable, "-c", WRITER], env=env, check=True, timeout=60)
    text = subprocess.run(
        [sys.executable, "-c", READER], env=env, check=True, timeout=60, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("syncworker_event_log_writes_total", frozenset({("event_type", "sync.failed")}))] == 3
    assert samples[("syncworker_sync_records_total", frozenset({("source", "s"), ("kind", "fetched")}))] == 15


def test_celery_hooks_wipe_stale_files_and_serve_on_worker_init(
    settings_factory: Any, redis_url: str, tmp_path: Any, monkeypatch: Any
) -> None:
    from celery.signals import worker_init, worker_process_shutdown

    stale = tmp_path / "counter_99999.db"
    stale.write_bytes(b"left by a previous run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    port = free_port()
    uninstall = metrics.install_celery_metrics_hooks(settings_factory(redis_url=redis_url, metrics_port=port))
    try:
        worker_init.send(sender=None)
        assert not stale.exists()
        scraped = scrape(f"http://127.0.0.1:{port}/metrics")
        assert scraped[("syncworker_breaker_store_up", frozenset())] == 1
        # A child's exit is handled without error even when it left no live gauge files.
        worker_process_shutdown.send(sender=None, pid=12345, exitcode=0)
    finally:
        uninstall()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
