"""What a run leaves around itself: progress on its row, a heartbeat on its lock, a fencing token
in the database, metrics, the client's correlation id."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from sqlalchemy import Engine, func, select, text
from sync_fakes import FakeClock, FakeEventLog, FakeOdoo, FakeWoo, kind_of
from sync_mirror import runs, state, suppliers

from models import Product
from worker.infra import metrics
from worker.infra.db import make_session_factory
from worker.kinds import get_kind
from worker.kinds.woocommerce.normalize import normalize_product
from worker.sync import Counts, RunStatus, SyncDeps, SyncSource, fence, run_sync
from worker.sync.context import RunContext, transaction
from worker.sync.fence import FencedOut
from worker.sync.lock import Acquired, Holder, LockHeartbeat, LockLost, RunLock, lock_name
from worker.sync.runs import close_stale_runs, finish_run, open_run

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
                        client, kind_of(client), clock=clock)  # fmt: skip

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
    run_lock = RunLock(fake_redis, "sw-test", WOO, ttl_seconds=0.3, holder=Holder.here(None, "full"))
    assert isinstance(run_lock.acquire(1), Acquired)
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
            for key in fake_redis.keys("*:lock"):
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


# -- fencing -------------------------------------------------------------------------------------


class StalledLock(RunLock):
    """The lock of a run paused past its TTL (GC pause, SIGSTOP): its last renewal succeeded and it has
    not looked since, so only the database can tell it a newer run took the source over."""

    def extend(self) -> None:
        return None

    def check(self) -> None:
        return None


def open_context(sqlite_engine: Engine, lock: RunLock, events: FakeEventLog, clock: FakeClock) -> RunContext:
    """What ``run_sync`` does at a run's start: claim the next token and open the run's row."""
    session_factory = make_session_factory(sqlite_engine)
    with transaction(session_factory) as conn:
        token, _ = fence.claim(conn, WOO)
        close_stale_runs(conn, WOO, now=clock())
        run_id = open_run(conn, WOO, full=True, task_id=None, now=clock(), fence=token, serves_through=0)
    return RunContext(
        spec=get_kind("woocommerce").spec(WOO),
        full=True,
        run_id=run_id,
        correlation_id=f"{WOO.value}:{run_id}",
        session_factory=session_factory,
        event_log=events,
        lock=lock,
        should_stop=lambda: False,
        clock=clock,
        started_at=clock(),
        fence=token,
    )


def test_a_run_fenced_out_by_a_newer_one_commits_nothing(
    sqlite_engine: Engine, fake_redis: Any, woo: FakeWoo, events: FakeEventLog, clock: FakeClock
) -> None:
    row = normalize_product(woo.add_product(100))
    old = open_context(
        sqlite_engine, StalledLock(fake_redis, "sw-test", WOO, 60, Holder.here("a", "full")), events, clock
    )
    lock = RunLock(fake_redis, "sw-test", WOO, 60, Holder.here("b", "full"))
    assert isinstance(lock.acquire(1), Acquired)
    new = open_context(sqlite_engine, lock, events, clock)
    assert (old.fence, new.fence) == (1, 2)
    before = state(sqlite_engine, WOO.value)

    with pytest.raises(FencedOut) as info:
        old.write([row], checkpoint={"phase": "products", "page": 1})
    assert isinstance(info.value, LockLost)  # the engine ends the run interrupted, like a lost lock
    with pytest.raises(FencedOut):
        old.checkpoint({"phase": "products", "page": 9})
    assert stored_products(sqlite_engine) == 0
    assert state(sqlite_engine, WOO.value) == before  # neither checkpoint was saved
    assert old.counts.inserted == 0
    old_row = next(r for r in runs(sqlite_engine) if r["id"] == old.run_id)
    assert (old_row["inserted"], old_row["fence"]) == (0, 1)

    new.write([row], checkpoint={"phase": "products", "page": 1})  # the current holder writes
    assert stored_products(sqlite_engine) == 1
    assert state(sqlite_engine, WOO.value)["checkpoint"] == {"full": {"phase": "products", "page": 1}}
    assert state(sqlite_engine, WOO.value)["fence"] == 2


def test_finish_run_leaves_a_row_a_newer_run_closed(sqlite_engine: Engine, clock: FakeClock) -> None:
    session_factory = make_session_factory(sqlite_engine)
    with transaction(session_factory) as conn:
        old = open_run(conn, WOO, full=True, task_id="old", now=clock(), fence=fence.claim(conn, WOO)[0])
    clock.tick(30)
    with transaction(session_factory) as conn:  # a newer run takes the source over
        fence.claim(conn, WOO)
        assert close_stale_runs(conn, WOO, now=clock()) == [old]
    closed = runs(sqlite_engine)[0]
    assert closed["status"] == "interrupted"

    clock.tick(30)
    with transaction(session_factory) as conn:  # the old run wakes up and closes its row
        finish_run(
            conn,
            old,
            status=RunStatus.SUCCEEDED,
            counts=Counts(fetched=9, inserted=9),
            now=clock(),
            details={"resumable": False},
        )
    assert runs(sqlite_engine)[0] == closed  # what the newer run wrote stands


def test_finish_run_closes_a_running_row(sqlite_engine: Engine, clock: FakeClock) -> None:
    session_factory = make_session_factory(sqlite_engine)
    with transaction(session_factory) as conn:
        run_id = open_run(conn, WOO, full=False, task_id="t", now=clock(), fence=1, serves_through=4)
    clock.tick(5)
    with transaction(session_factory) as conn:
        finish_run(
            conn, run_id, status=RunStatus.SUCCEEDED, counts=Counts(fetched=2, inserted=2), now=clock()
        )
    row = runs(sqlite_engine)[0]
    assert (row["status"], row["inserted"], row["duration_seconds"]) == ("succeeded", 2, 5.0)
    assert (row["fence"], row["serves_through"]) == (1, 4)


def test_a_run_that_wakes_after_a_newer_run_claimed_the_source_writes_nothing_more(
    sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine, events: FakeEventLog, clock: FakeClock
) -> None:
    for pid in range(1, 11):
        odoo.add(pid)
    taken_over: list[dict[str, Any]] = []

    def take_over(op: str, args: dict[str, Any]) -> None:
        # Pages are written in the fetching thread: the two pages before this one are committed.
        if op == "pages" and args.get("after_id") == 6 and not taken_over:
            with transaction(make_session_factory(sqlite_engine)) as conn:
                fence.claim(conn, SyncSource.ODOO_SUPPLIERS)
                close_stale_runs(conn, SyncSource.ODOO_SUPPLIERS, now=clock())
            taken_over.append(state(sqlite_engine, SyncSource.ODOO_SUPPLIERS.value))
        return None

    odoo.fail = take_over
    result = sync(SyncSource.ODOO_SUPPLIERS, full=True)
    assert result.status is RunStatus.INTERRUPTED and result.resumable
    assert "fenced out" in (result.error or "")
    assert sorted(suppliers(sqlite_engine)) == list(range(1, 7))  # nothing after the take-over
    after = state(sqlite_engine, SyncSource.ODOO_SUPPLIERS.value)
    assert after == taken_over[0]  # no checkpoint, no outcome: the source belongs to the newer run
    assert after["last_run_id"] is None and after["fence"] == 2
    (row,) = runs(sqlite_engine)
    assert (row["status"], row["fence"]) == ("interrupted", 1)
    assert (
        row["error"] == "its worker stopped, or it lost the source to a newer run"
    )  # as the newer run left it


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
    succeeded, deferred = runs_counted("full", "succeeded"), runs_counted("incremental", "deferred")
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    assert runs_counted("full", "succeeded") == succeeded + 1

    prefix = settings_factory().redis_key_prefix
    holder = RunLock(fake_redis, prefix, WOO, ttl_seconds=60, holder=Holder.here("other", "full"))
    assert isinstance(holder.acquire(1), Acquired)
    assert sync(WOO).status is RunStatus.DEFERRED
    assert runs_counted("incremental", "deferred") == deferred + 1
    holder.release()

    failed = runs_counted("incremental", "failed")
    from worker.infra.errors import FatalUpstreamError

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


# -- the time limit at the edges of a run --------------------------------------------------------


def test_a_time_limit_while_closing_the_run_keeps_its_outcome(
    sync: Callable[..., Any],
    woo: FakeWoo,
    sqlite_engine: Engine,
    fake_redis: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billiard.exceptions import SoftTimeLimitExceeded

    from worker.sync import engine

    build_catalog(woo, size=4)

    def time_up(*args: Any, **kwargs: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(engine, "finish_run", time_up)
    result = sync(WOO, full=True)
    assert result.status is RunStatus.SUCCEEDED  # the pass completed: that stands
    assert stored_products(sqlite_engine) == 4 + 1
    assert state(sqlite_engine, WOO.value)["checkpoint"] == {}
    assert runs(sqlite_engine)[-1]["status"] == "running"  # left for the next run to close
    assert not fake_redis.keys("*:lock")
    monkeypatch.undo()
    assert sync(WOO).status is RunStatus.SUCCEEDED
    assert runs(sqlite_engine)[0]["status"] == "interrupted"


def test_a_time_limit_inside_a_page_commit_is_no_failed_page(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billiard.exceptions import SoftTimeLimitExceeded

    from worker.sync import context

    build_catalog(woo, size=12)
    upsert = context.upsert_prepared
    commits: list[int] = []

    def time_up_on_the_third(*args: Any, **kwargs: Any) -> Any:
        commits.append(1)
        if len(commits) == 3:
            raise SoftTimeLimitExceeded()
        return upsert(*args, **kwargs)

    monkeypatch.setattr(context, "upsert_prepared", time_up_on_the_third)
    result = sync(WOO, full=True)
    assert (result.status, result.resumable, result.error) == (
        RunStatus.INTERRUPTED,
        True,
        "SoftTimeLimitExceeded",
    )
    assert result.counts.failed == 0
    assert result.committed == 2
    row = runs(sqlite_engine)[-1]
    assert (row["status"], row["failed"]) == ("interrupted", 0)
    assert state(sqlite_engine, WOO.value)["checkpoint"]["full"]["page"] == 2  # the pages before stand
