"""Two shops behind one host that refuses above a rate it does not announce, synced by real Celery
worker processes: the fleet's budget slows them down together instead of opening their breakers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from cryptography.fernet import Fernet
from e2e_harness import (
    FAST_ENV,
    Stack,
    clean_environment,
    enqueue,
    events,
    expected_products,
    mirrored_products,
    outcome,
    product_mismatches,
)
from sqlalchemy import Engine

from worker.budget import host_of
from worker.celeryapp.app import close_app, create_app
from worker.infra.settings import load_settings
from worker.sandbox import HostThrottle, ThrottleSpec, WooFleet

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
HIDDEN_RATE = 12.0


@pytest.fixture
def fleet() -> Iterator[WooFleet]:
    throttle = HostThrottle(ThrottleSpec(rate=HIDDEN_RATE, burst=3, retry_after_share=0.3, retry_after=1))
    with WooFleet(shops=2, size=600, seed=61, latency_ms=20, throttle=throttle) as f:
        yield f


@pytest.fixture
def env(
    e2e_redis_url: str, migrated_pg_url: str, clean_pg: Engine, fleet: WooFleet, tmp_path: Path
) -> dict[str, str]:
    values = {
        **clean_environment(),
        **FAST_ENV,
        "DATABASE_URL": migrated_pg_url,
        "REDIS_URL": e2e_redis_url,
        "REDIS_KEY_PREFIX": "sw-e2e-budget",
        "EVENT_SPOOL_PATH": str(tmp_path / "events.spool"),
        "SOURCES_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        # An operator who does not know the host's limit sets a ceiling well above it.
        "WOOCOMMERCE_BUDGET__CEILING": str(HIDDEN_RATE * 3),
        "WOOCOMMERCE_BREAKER__FAILURE_THRESHOLD": "3",
    }
    lines = ["sources:"]
    for source in fleet.sources():
        var = source["name"].upper().replace("-", "_")
        values[f"{var}_KEY"] = source["credentials"]["consumer_key"]
        values[f"{var}_SECRET"] = source["credentials"]["consumer_secret"]
        lines += [
            f"  - name: {source['name']}",
            "    kind: woocommerce",
            f"    url: {source['url']}",
            f'    credentials: {{consumer_key: "env:{var}_KEY", consumer_secret: "env:{var}_SECRET"}}',
        ]
    (tmp_path / "fleet.yaml").write_text("\n".join(lines) + "\n")
    syncworker(values, tmp_path, "sources", "apply", str(tmp_path / "fleet.yaml"))
    return values


def syncworker(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "syncworker"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def app(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    a = create_app(load_settings(_env_file=None))
    yield a
    close_app(a)


def test_a_throttling_host_slows_the_fleet_down_and_both_mirrors_complete(
    fleet: WooFleet, env: dict[str, str], app: Celery, db: Engine, tmp_path: Path
) -> None:
    stack = Stack(env, tmp_path)
    try:
        stack.worker(concurrency=2, name="budget-a")
        stack.worker(concurrency=2, name="budget-b")
        results = {name: enqueue(app, name, full=True) for name in fleet.tenants}
        states = {name: outcome(r, 150)[0] for name, r in results.items()}
    finally:
        stack.close()
    assert states == {name: "SUCCESS" for name in fleet.tenants}
    for name, shop in fleet.tenants.items():
        assert product_mismatches(expected_products(shop.catalog), mirrored_products(db, name)) == []

    counts = fleet.throttle.counts
    host = host_of(fleet.url_of(next(iter(fleet.tenants))))
    # The host did refuse (the fleet starts at three times its rate), and the budget learnt from it:
    assert counts.throttled > 0
    lowered = [e for e in events(db, "budget.lowered") if e["aggregate_id"] == host]
    assert lowered, "the first cut is written to event_log"
    # ...without a single breaker opening: a host asking us to slow down is not a host that is down.
    assert events(db, "breaker.opened") == []
    budget = {b["host"]: b for b in json.loads(syncworker(env, tmp_path, "budgets", "list", "--json"))}[host]
    # Every refusal was reported to the fleet's budget (one lost to a Redis timeout would go to a local one).
    assert 0.9 * counts.throttled <= budget["throttled"] <= counts.throttled
    assert budget["rate"] < HIDDEN_RATE * 3
    # Once the fleet has adapted (a few seconds after the first refusal), refusals are rare.
    arrivals = fleet.throttle.arrivals()
    first = min(a.at for a in arrivals if a.status == 429)
    later = [a for a in arrivals if a.at > first + 5]
    assert len(later) > 50
    assert sum(a.status == 429 for a in later) < 0.1 * len(later)  # no budget: over half
