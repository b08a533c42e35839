"""The alert rules fire on what a real worker exports during a real outage, and stay quiet while healthy.

A worker (prefork, multiprocess metrics) syncs the WooCommerce simulator, which then answers 503 until the
breaker opens; then the worker stops. Its /metrics page is scraped at each stage and the scrapes become
promtool's input series on a one-minute timeline (healthy, outage, down), so `promtool test rules`
evaluates deploy/prometheus/rules.yml on them with the rules' real `for:` durations.
"""

from __future__ import annotations

import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from celery import Celery
from e2e_harness import Stack, enqueue, runs, wait_until
from monitoring_files import (
    PROMETHEUS_SERIES,
    RULES,
    SCRAPE_JOB,
    every_expression,
    metric_names,
    run_promtool,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"
FIRING = 'max by (alertname) (ALERTS{alertstate="firing"})'
ODOO_CONNECTION = {"ODOO_URL", "ODOO_DB", "ODOO_USERNAME", "ODOO_API_KEY"}
Page = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Scrape:
    at: float  # wall clock, Unix seconds
    page: Page | None  # None: the endpoint did not answer


def scrape(url: str) -> Scrape:
    at = time.time()
    try:
        response = requests.get(url, timeout=5)
    except requests.ConnectionError:
        return Scrape(at, None)
    response.raise_for_status()
    families = text_string_to_metric_families(response.text)
    page = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    return Scrape(at, page)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sync(app: Celery, db: Engine, *, full: bool) -> str:
    """Run one sync through the worker; the status of its ``sync_runs`` row once no run is running."""
    before = len(runs(db, WOO))
    enqueue(app, WOO, full=full)

    def ended() -> str | None:
        rows = runs(db, WOO)
        if len(rows) > before and all(row["status"] != "running" for row in rows):
            return str(rows[-1]["status"])
        return None

    status: str = wait_until(ended, timeout=120, what="the sync run to end")
    return status


def series_name(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return name + "{" + ",".join(f"{k}={quoted(v)}" for k, v in labels) + "}"


def input_series(phases: list[tuple[Scrape, int]], instance: str) -> list[dict[str, str]]:
    """Each scrape repeated once a minute for its phase, as Prometheus would have stored it.

    Timestamps move onto promtool's clock, which starts at the Unix epoch (minute 0 = the first
    scrape); `up` is whether the scrape answered; a series that stops being exported gets a stale
    marker, as Prometheus writes one.
    """
    target = (("instance", instance), ("job", SCRAPE_JOB))
    origin = phases[0][0].at
    keys = sorted({key for scrape, _ in phases for key in (scrape.page or {})})
    up = ["1" if scrape.page is not None else "0" for scrape, minutes in phases for _ in range(minutes)]
    series = [{"series": series_name("up", target), "values": " ".join(up)}]
    for name, labels in keys:
        values: list[str] = []
        for scrape, minutes in phases:
            value = (scrape.page or {}).get((name, labels))
            if value is not None and name.endswith("_timestamp_seconds"):
                value -= origin
            for _ in range(minutes):
                if value is not None:
                    values.append(repr(float(value)))
                else:
                    values.append("stale" if values and values[-1] not in ("_", "stale") else "_")
        series.append(
            {"series": series_name(name, tuple(sorted(labels + target))), "values": " ".join(values)}
        )
    return series


def expect_firing(minute: int, alerts: set[str]) -> dict[str, Any]:
    samples = [{"labels": series_name("", (("alertname", a),)), "value": 1} for a in sorted(alerts)]
    return {"expr": FIRING, "eval_time": f"{minute}m", "exp_samples": samples}


def state_of(page: Page, breaker: str) -> str:
    [state] = [
        dict(labels)["state"]
        for (name, labels), value in page.items()
        if name == "syncworker_breaker_state" and dict(labels)["breaker"] == breaker and value == 1
    ]
    return state


def test_alerts_fire_during_a_real_outage_and_not_while_healthy(
    woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    # WooCommerce only: a configured Odoo that never ran would rightly be "never succeeded".
    env = {k: v for k, v in e2e_env.items() if k not in ODOO_CONNECTION} | {
        "METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "SYNC_INCREMENTAL_INTERVAL_SECONDS": "300",
        "WOOCOMMERCE_BREAKER__FAILURE_THRESHOLD": "3",
    }
    url = f"http://127.0.0.1:{port}/metrics"
    stack = Stack(env, tmp_path)
    try:
        worker = stack.worker()
        wait_until(lambda: scrape(url).page is not None, timeout=30, what="the metrics endpoint")
        assert sync(client_app, db, full=True) == "succeeded"
        healthy = scrape(url)

        woo.faults.set(kind="status", status=503, rate=1.0)
        statuses = [sync(client_app, db, full=False)]
        while statuses[-1] != "skipped_breaker_open" and len(statuses) < 10:
            statuses.append(sync(client_app, db, full=False))
        assert "failed" in statuses and statuses[-1] == "skipped_breaker_open", statuses
        outage = scrape(url)

        worker.signal(signal.SIGTERM)
        worker.wait(timeout=60)
        down = scrape(url)
    finally:
        stack.close()
    assert healthy.page is not None and outage.page is not None and down.page is None
    assert state_of(healthy.page, "woocommerce:woocommerce-products") == "closed"
    assert state_of(outage.page, "woocommerce:woocommerce-products") in ("open", "half_open")

    # Every name a rule or panel reads is on the real worker's page.
    used = {name for expr in every_expression() for name in metric_names(expr)}
    exported = {name for name, _ in outage.page}
    assert used - PROMETHEUS_SERIES - exported == set()

    # Minutes 0-4 healthy, 5-14 the upstream down, 15-20 the worker down.
    phases = [(healthy, 5), (outage, 10), (down, 6)]
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(phases, f"127.0.0.1:{port}"),
                "promql_expr_test": [
                    expect_firing(4, set()),
                    # Failed runs page at once; the breaker only after 5 minutes open.
                    expect_firing(9, {"SyncRunsFailing"}),
                    # 14 minutes after the last success: more than twice the 5-minute interval.
                    expect_firing(14, {"SyncRunsFailing", "SyncBreakerOpen", "SyncOverdue"}),
                    # The worker is gone: its series are stale, the failures still in the 30-minute window.
                    expect_firing(20, {"SyncWorkerDown", "NoLiveSyncWorker", "SyncRunsFailing"}),
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
