"""What a run leaves around itself: progress on its row, a heartbeat on its lock, metrics, the
client's correlation id."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from sqlalchemy import Engine, func, select, text
from sync_fakes import FakeEventLog, FakeWoo
from sync_mirror import runs

from models import Product
from worker import metrics
from worker.db import make_session_factory
from worker.sync import RunStatus, SyncDeps, SyncSource, run_sync
from worker.sync.lock import LockHeartbeat, LockLost, RunLock, lock_name

WOO = SyncSource.WOOCOMMERCE_PRODUCTS
HEARTBEAT = "sync-lock-heartbeat"


def build_catalog(woo: FakeWoo, size: int = 12) -> None:
    for pid in range(100, 100 + size):
        if pid % 4 == 0:
            woo.add_product(pid, type="variable", manage_stock=True, stock_quantity=5)
            woo.add_variation(pid, pid * 10 + 1, manage_stock="parent", stock_quantity=5)
        else:
            woo.add_product(pid, price="9.5", regular_price="90", stock_quantity=None)


def wait_for(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    """Poll until ``condition``; the limit only keeps a broken build from hanging."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def heartbeats() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == HEARTBEAT and t.is_alive()]


def stored_products(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Product.__table__)).scalar_one())


class NoStatsBreaker:
    def stats(self) -> Any:
        return None


def run_row_and_stored(engine: Engine) -> dict[str, Any]:
    query = text(
        "SELECT status, fetched, inserted, (SELECT count(*) FROM products) AS stored"
        " FROM sync_runs ORDER BY id DESC LIMIT 1"
    )
    with engine.connect() as conn:
        return dict(conn.execute(query).mappings().one())


@pytest.fixture
def short_ttl_deps(
    settings_factory: Any, sqlite_engine: Engine, fake_redis: Any, events: FakeEventLog, clock: Any
) -> Callable[[Any], SyncDeps]:
    """Deps whose run lock lives 0.3 s: a heartbeat every 0.1 s must keep it."""
    settings = settings_factory(sync_overlap_seconds=120, sync_lock_ttl_seconds=0.3)

    def make(client: Any) -> SyncDeps:
        return SyncDeps(settings, make_session_factory(sqlite_engine), fake_redis, events, NoStatsBreaker(),
                        client, clock=clock)  # fmt: skip

    return make


# -- progress ------------------------------------------------------------------------------------


def test_run_row_counts_follow_each_committed_page(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo, size=20)
    seen: list[dict[str, Any]] = []

    def observe(op: str, args: dict[str, Any]) -> None:
        if op == "products" and args.get("page", 0) >= 3:
            # One statement from another connection: a consistent view of what the run committed.
            seen.append(run_row_and_stored(sqlite_engine))
        return None

    woo.fail = observe
    result = sync(WOO, full=True)
    assert result.status is RunStatus.SUCCEEDED
    assert seen and all(r["status"] == "running" for r in seen)
    for row in seen:
        # The counts on the row are those of exactly the pages committed so far.
        assert row["inserted"] == row["stored"]
        assert row["fetched"] >= row["inserted"]
    assert seen[-1]["inserted"] > seen[0]["inserted"] >= 0
    final = runs(sqlite_engine)[-1]
    assert final["inserted"] == result.counts.inserted == stored_products(sqlite_engine)


# -- lock heartbeat ------------------------------------------------------------------------------


@pytest.fixture
def lock(fake_redis: fakeredis.FakeRedis) -> Iterator[RunLock]:
    run_lock = RunLock(fake_redis, "sw-test", WOO, ttl_seconds=0.3)
    assert run_lock.acquire()
    yield run_lock
    run_lock.release()


def test_heartbeat_keeps_the_lock_past_its_ttl_and_stops_with_the_run(
    lock: RunLock, fake_redis: fakeredis.FakeRedis
) -> None:
    with LockHeartbeat(lock, 0.1) as heartbeat:
        # Six renewals 0.1 s apart outlast the 0.3 s TTL several times over.
        wait_for(lambda: heartbeat.beats >= 6, "six renewals")
        assert fake_redis.exists(lock_name("sw-test", WOO))
        lock.extend()  # still ours
    assert not heartbeat.alive
    assert not lock.lost


def test_heartbeat_notices_a_lost_lock_and_ends(lock: RunLock, fake_redis: fakeredis.FakeRedis) -> None:
    with LockHeartbeat(lock, 0.05) as heartbeat:
        fake_redis.set(lock_name("sw-test", WOO), "another-run")  # expired and taken over
        wait_for(lambda: not heartbeat.alive, "the heartbeat to end")
        assert lock.lost
        with pytest.raises(LockLost):
            lock.check()
    assert fake_redis.get(lock_name("sw-test", WOO)) == b"another-run"  # never touched the new owner's


def test_a_page_slower_than_the_lock_ttl_does_not_stop_the_run(
    short_ttl_deps: Callable[[Any], SyncDeps], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo, size=12)

    def slow(op: str, args: dict[str, Any]) -> None:
        if op == "variations" and args.get("product_id") == 104:
            time.sleep(1.0)  # more than three TTLs: without renewals the lock would be gone
        return None

    woo.fail = slow
    result = run_sync(WOO, short_ttl_deps(woo), full=True, task_id=None, should_stop=lambda: False)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert stored_products(sqlite_engine) == 12 + 3
    assert not heartbeats()


def test_lock_lost_between_pages_interrupts_before_the_next_write(
    short_ttl_deps: Callable[[Any], SyncDeps], woo: FakeWoo, sqlite_engine: Engine, fake_redis: Any
) -> None:
    build_catalog(woo, size=12)
    stored_when_lost: list[int] = []

    def steal(op: str, args: dict[str, Any]) -> None:
        if op == "products" and args.get("page") == 3 and not stored_when_lost:
            for key in fake_redis.keys("*:lock:*"):
                fake_redis.set(key, "another-run")
            wait_for(lambda: not heartbeats(), "the heartbeat to notice")
            stored_when_lost.append(stored_products(sqlite_engine))
        return None

    woo.fail = steal
    result = run_sync(WOO, short_ttl_deps(woo), full=True, task_id=None, should_stop=lambda: False)
    assert result.status is RunStatus.INTERRUPTED
    assert "lost" in (result.error or "")
    assert stored_products(sqlite_engine) == stored_when_lost[0]  # nothing written after the loss
    assert runs(sqlite_engine)[-1]["status"] == "interrupted"


# -- metrics -------------------------------------------------------------------------------------


def runs_counted(mode: str, status: str) -> float:
    for family in metrics.SYNC_RUNS.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels == {
                "source": WOO.value,
                "mode": mode,
                "status": status,
            }:
                return float(sample.value)
    return 0.0


def test_every_closed_run_is_counted_once(
    sync: Callable[..., Any], woo: FakeWoo, fake_redis: Any, settings_factory: Any
) -> None:
    build_catalog(woo, size=4)
    succeeded, skipped = (
        runs_counted("full", "succeeded"),
        runs_counted("incremental", "skipped_already_running"),
    )
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    assert runs_counted("full", "succeeded") == succeeded + 1

    holder = RunLock(fake_redis, settings_factory().redis_key_prefix, WOO, ttl_seconds=60)
    assert holder.acquire()
    assert sync(WOO).status is RunStatus.SKIPPED_ALREADY_RUNNING
    assert runs_counted("incremental", "skipped_already_running") == skipped + 1
    holder.release()

    failed = runs_counted("incremental", "failed")
    from worker.errors import FatalUpstreamError

    woo.fail = lambda op, args: FatalUpstreamError("gone", upstream="woocommerce", operation=op)
    assert sync(WOO).status is RunStatus.FAILED
    assert runs_counted("incremental", "failed") == failed + 1


# -- correlation id ------------------------------------------------------------------------------


class CorrelatedWoo(FakeWoo):
    """A fake that, like the real clients, carries a settable correlation id; notes it per request."""

    correlation_id: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen_ids: set[str | None] = set()

    def _check(self, op: str, **args: Any) -> None:
        self.seen_ids.add(self.correlation_id)
        super()._check(op, **args)


def test_client_carries_the_run_correlation_id_only_during_the_run(
    make_deps: Callable[[Any], SyncDeps], clock: Any
) -> None:
    woo = CorrelatedWoo(clock)
    build_catalog(woo, size=4)
    result = run_sync(WOO, make_deps(woo), full=True, task_id=None, should_stop=lambda: False)
    assert woo.seen_ids == {f"{WOO.value}:{result.run_id}"}
    assert woo.correlation_id is None
