"""Operations trust on real processes: a dead holder is replaced at once, a paused run is fenced out,
and a full run longer than the soft time limit finishes across deliveries, deletions included."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from e2e_harness import (
    CeleryProcess,
    Stack,
    enqueue,
    events,
    expected_products,
    mirrored_products,
    outcome,
    product_mismatches,
    runs,
    wait_until,
)
from sqlalchemy import Engine, text

from worker.infra.settings import Settings
from worker.sandbox.woocommerce import WooCommerceSimulator
from worker.sync.lock import followups_name, lock_name
from worker.sync.sources import SyncSource

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=13, size=800) as sim:
        yield sim


def wait_mid_run(db: Engine) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        open_runs = [r for r in runs(db, WOO) if r["status"] == "running"]
        return open_runs[-1] if open_runs and mirrored_products(db) else None

    found: dict[str, Any] = wait_until(running, timeout=60, what="a run with a committed page")
    return found


def kill_group(proc: CeleryProcess, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def state_row(db: Engine) -> dict[str, Any]:
    with db.connect() as conn:
        row = conn.execute(text("SELECT * FROM sync_state WHERE source = :s"), {"s": WOO}).mappings().one()
        return dict(row)


def run_row(db: Engine, run_id: int) -> dict[str, Any]:
    return next(r for r in runs(db, WOO) if r["id"] == run_id)


def test_after_the_whole_worker_is_killed_a_request_is_served_at_once_and_the_redelivery_acks(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery
) -> None:
    # The OOM killer or a lost host takes the whole worker mid-run; its lock and its message stay behind.
    first = stack.worker()
    woo.faults.set(latency_ms=150)
    killed = enqueue(client_app, WOO, full=True)
    dead_run = wait_mid_run(db)
    kill_group(first, signal.SIGKILL)
    first.wait(timeout=30)
    committed = len(mirrored_products(db))
    assert 0 < committed < len(expected_products(woo.catalog))

    # Restarted, and asked again: the dead holder is recognised, the request runs and resumes.
    woo.faults.clear()
    stack.worker()
    again = enqueue(client_app, WOO, full=True)
    state, summary = outcome(again, 60)
    assert state == "SUCCESS", summary
    serving = run_row(db, summary["run_id"])
    assert serving["status"] == "succeeded"
    assert serving["inserted"] == len(expected_products(woo.catalog)) - committed  # resumed, not restarted
    assert run_row(db, dead_run["id"])["status"] == "interrupted"
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []

    # The killed message comes back after the visibility timeout and finds its work done.
    state, late = outcome(killed, 120)
    assert (state, late["status"], late["run_id"]) == ("SUCCESS", "served", serving["id"])
    assert [r["status"] for r in runs(db, WOO)] == ["interrupted", "succeeded"]


def test_a_run_paused_past_its_lock_ttl_is_fenced_out_and_writes_nothing_after_the_takeover(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_settings: Settings
) -> None:
    stack.env["SYNC_LOCK_TTL_SECONDS"] = "3"
    paused = stack.worker()
    woo.faults.set(latency_ms=150)
    first = enqueue(client_app, WOO, full=True)
    old = wait_mid_run(db)
    # A GC pause, a partition, a VM frozen by its host: the whole process stops, heartbeat included.
    kill_group(paused, signal.SIGSTOP)
    try:
        broker = redis.Redis.from_url(e2e_settings.redis_url)
        lock = lock_name(e2e_settings.redis_key_prefix, SyncSource.WOOCOMMERCE_PRODUCTS)
        wait_until(lambda: not broker.exists(lock), timeout=30, what="the paused run's lock to expire")
        broker.close()

        woo.faults.clear()
        stack.worker()
        second = enqueue(client_app, WOO, full=True)
        state, summary = outcome(second, 90)
        assert state == "SUCCESS", summary
        new = run_row(db, summary["run_id"])
        superseded = run_row(db, old["id"])
        assert superseded["status"] == "interrupted"
        assert new["fence"] > old["fence"]
    finally:
        kill_group(paused, signal.SIGCONT)

    # The paused run wakes up mid-page or between pages: whatever it does now, it cannot commit.
    state, late = outcome(first, 120)
    assert (state, late["status"]) == ("SUCCESS", "served")
    after = run_row(db, old["id"])
    assert after == superseded  # not one more count, not a new status: nothing of it committed
    st = state_row(db)
    assert st["fence"] == new["fence"]
    assert "full" not in (st["checkpoint"] or {})  # the newer run's completion stands
    assert st["last_run_id"] == new["id"]
    interrupted = [e["payload"] for e in events(db, "sync.interrupted") if e["payload"].get("closed_by_run")]
    assert [(p["run_id"], p["closed_by_run"]) for p in interrupted] == [(old["id"], new["id"])]
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []


@pytest.fixture
def big_woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=17, size=1500) as sim:
        yield sim


def test_a_full_run_longer_than_the_soft_time_limit_finishes_across_deliveries_with_its_deletions(
    stack: Stack, big_woo: WooCommerceSimulator, db: Engine, client_app: Celery, e2e_env: dict[str, str]
) -> None:
    woo = big_woo
    stack.env |= {
        "WOOCOMMERCE_URL": woo.base_url,
        "WOOCOMMERCE_CONSUMER_KEY": woo.consumer_key,
        "WOOCOMMERCE_CONSUMER_SECRET": woo.consumer_secret,
        # A 4 s time budget per delivery (the soft limit less a fifth).
        "CELERY_TASK_SOFT_TIME_LIMIT": "5",
        "CELERY_TASK_TIME_LIMIT": "10",
    }
    stack.worker()
    state, summary = outcome(enqueue(client_app, WOO, full=True), 240)
    assert state == "SUCCESS", summary
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []

    products = sorted(int(p["id"]) for p in woo.catalog.iter_products())
    for pid in products[::60]:
        woo.catalog.delete(pid)
    deleted = len(products[::60])
    woo.faults.set(latency_ms=120)  # the listings span deliveries
    # (phase of the committed checkpoint, deliveries ended so far), sampled while the run goes on.
    seen: list[tuple[str, int]] = []
    task = enqueue(client_app, WOO, full=True)

    def finished() -> bool:
        checkpoint = (state_row(db)["checkpoint"] or {}).get("full") or {}
        ended = sum(r["status"] == "interrupted" for r in runs(db, WOO) if r["task_id"] == task.id)
        seen.append((str(checkpoint.get("phase")), ended))
        if checkpoint.get("phase") == "reconcile":
            # Slow enough that the reconciliation alone outlasts a delivery's budget.
            woo.faults.set(latency_ms=1200)
        return task.state in ("SUCCESS", "FAILURE")

    wait_until(finished, timeout=300, interval=0.2, what="the long full run")
    assert task.state == "SUCCESS", task.result
    deliveries = [r for r in runs(db, WOO) if r["task_id"] == task.id]
    assert len(deliveries) >= 3
    assert [r["status"] for r in deliveries] == ["interrupted"] * (len(deliveries) - 1) + ["succeeded"]
    assert all(r["details"]["resumable"] for r in deliveries[:-1])
    assert sum(r["marked_deleted"] for r in deliveries) >= deleted
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []
    # The reconciliation itself was cut and resumed: a delivery ended between two samples that both
    # found the run reconciling.
    during = [ended for phase, ended in seen if phase == "reconcile"]
    assert during and max(during) > min(during), seen


def test_a_follow_up_whose_releaser_died_is_enqueued_by_the_sweeper(
    stack: Stack, woo: WooCommerceSimulator, db: Engine, e2e_settings: Settings
) -> None:
    # What a run leaves behind when its worker dies between releasing the source and enqueueing the
    # follow-up: a pending full request, no lock, nobody left to enqueue it.
    broker = redis.Redis.from_url(e2e_settings.redis_url)
    key = followups_name(e2e_settings.redis_key_prefix, SyncSource.WOOCOMMERCE_PRODUCTS)
    broker.hset(key, mapping={"full": 1})
    broker.close()
    stack.worker()
    wait_until(lambda: [r["status"] for r in runs(db, WOO)] == ["succeeded"], timeout=60,
               what="the swept follow-up to run")  # fmt: skip
    (run,) = runs(db, WOO)
    assert run["mode"] == "full"
    assert product_mismatches(expected_products(woo.catalog), mirrored_products(db)) == []
