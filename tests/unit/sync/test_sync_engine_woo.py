"""run_sync for WooCommerce against an in-process catalog, SQLite and fakeredis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine
from sync_fakes import FakeClock, FakeEventLog, FakeWoo
from sync_mirror import assert_woo_mirror, products, runs, state

from worker.errors import CircuitOpenError, FatalUpstreamError, RetriableUpstreamError
from worker.sync import RunStatus, SyncSource
from worker.sync.lock import Acquired, Holder, RunLock, followups_name, lock_name, next_request

WOO = SyncSource.WOOCOMMERCE_PRODUCTS


def build_catalog(woo: FakeWoo, size: int = 10) -> None:
    for pid in range(100, 100 + size):
        if pid % 4 == 0:
            woo.add_product(pid, type="variable", manage_stock=True, stock_quantity=5)
            woo.add_variation(pid, pid * 10 + 1, manage_stock="parent", stock_quantity=5)
            woo.add_variation(pid, pid * 10 + 2, price="19.999", regular_price="19.999")
        else:
            woo.add_product(pid, price=str(pid % 7) + ".5", regular_price="90", stock_quantity=None)
    woo.add_product(100 + size, status="trash")


def test_full_sync_mirrors_the_catalog(sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine) -> None:
    build_catalog(woo)
    result = sync(WOO, full=True)
    assert result.status is RunStatus.SUCCEEDED
    assert_woo_mirror(sqlite_engine, woo)
    n = len(woo.products) + sum(len(v) for v in woo.variations.values())
    assert (result.counts.fetched, result.counts.inserted, result.counts.updated) == (n, n, 0)
    run = runs(sqlite_engine)[-1]
    assert (run["status"], run["mode"], run["inserted"], run["task_id"]) == ("succeeded", "full", n, "task-1")
    assert run["finished_at"] is not None and run["duration_seconds"] is not None
    st = state(sqlite_engine, WOO.value)
    assert st["watermark"] == run["started_at"] and st["checkpoint"] == {}


def test_incremental_mirrors_exactly_the_changes(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, clock: FakeClock
) -> None:
    build_catalog(woo)
    sync(WOO, full=True)
    before = products(sqlite_engine)
    clock.tick(600)
    woo.add_product(500, price="1.25")
    woo.change(101, price="3.10", name="Renamed")
    woo.change(102, status="private")  # archived / hidden
    woo.change(103, status="trash")
    woo.add_variation(104, 9999, price="7")  # a variation edit; parent's date bumped below
    woo.touch(104)
    clock.tick(1)
    woo.calls.clear()
    result = sync(WOO)
    assert result.status is RunStatus.SUCCEEDED
    assert_woo_mirror(sqlite_engine, woo)
    after = products(sqlite_engine)
    changed = {
        k for k in after if k not in before or after[k]["last_synced_at"] != before[k]["last_synced_at"]
    }
    assert changed == {500, 101, 102, 103, 104, 9999}
    assert result.counts.inserted == 2
    assert after[101]["first_synced_at"] == before[101]["first_synced_at"]
    listings = [args for op, args in woo.calls if op == "products" and args["status"] == "any"]
    assert listings and all(args["after"] is not None for args in listings)  # windows, not a full listing


def test_second_noop_run_writes_nothing(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    sync(WOO, full=True)
    sync(WOO)
    before = products(sqlite_engine)
    result = sync(WOO)
    assert result.counts.written == 0
    assert products(sqlite_engine) == before
    again = sync(WOO, full=True)  # a full no-op re-reads everything and still writes nothing
    assert again.counts.written == 0 and again.counts.unchanged == again.counts.fetched > 0
    assert products(sqlite_engine) == before


def test_full_run_marks_force_deleted_products_and_their_variations(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    sync(WOO, full=True)
    del woo.products[104]  # force-deleted: gone from every listing, no tombstone
    del woo.products[101]
    del woo.variations[108][1082]
    woo.products[108]["variations"].remove(1082)
    # An incremental run marks no product deleted, but the complete variations listing it reads for
    # 108 (in its overlap window) is evidence for 108's variations, and 1082 answers 404.
    assert sync(WOO).counts.marked_deleted == 1
    result = sync(WOO, full=True)
    assert result.counts.marked_deleted == 4
    assert_woo_mirror(sqlite_engine, woo, deleted=frozenset({101, 104, 1041, 1042, 1082}))
    woo.add_product(101)  # it comes back: the tombstone is cleared
    sync(WOO, full=True)
    assert products(sqlite_engine)[101]["deleted_at"] is None


def test_empty_or_failing_listing_never_marks_deleted(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    sync(WOO, full=True)
    saved = dict(woo.products)
    woo.products.clear()  # an upstream that suddenly lists nothing
    result = sync(WOO, full=True)
    assert result.counts.marked_deleted == 0
    assert all(r["deleted_at"] is None for r in products(sqlite_engine).values())
    woo.products.update(saved)
    del woo.products[101]

    def fail_second_id_page(op: str, args: dict[str, Any]) -> Exception | None:
        if op == "ids" and args["page"] == 2:
            return RetriableUpstreamError("503", upstream="woocommerce", status_code=503)
        return None

    woo.fail = fail_second_id_page
    assert sync(WOO, full=True).status is RunStatus.FAILED
    assert all(r["deleted_at"] is None for r in products(sqlite_engine).values())


def test_invalid_record_is_logged_skipped_and_run_is_partial(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo)
    woo.change(105, price="twelve")
    result = sync(WOO, full=True)
    assert result.status is RunStatus.PARTIAL
    assert result.counts.skipped == 1
    assert 105 not in products(sqlite_engine) and 106 in products(sqlite_engine)
    (event,) = events.of("woocommerce.sync.record_invalid")
    assert event["payload"]["id"] == "105" and "price" in event["payload"]["reason"]
    assert event["correlation_id"] == f"{WOO.value}:{result.run_id}"
    assert runs(sqlite_engine)[-1]["status"] == "partial"


def test_stop_mid_run_then_resume_loses_and_repeats_nothing(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo, size=20)
    polls = iter(range(1000))
    result = sync(WOO, full=True, should_stop=lambda: next(polls) == 2)
    assert result.status is RunStatus.INTERRUPTED and result.resumable
    assert events.of("sync.interrupted")
    cp = state(sqlite_engine, WOO.value)["checkpoint"]["full"]
    assert (cp["phase"], cp["page"]) == ("products", 3)
    woo.calls.clear()
    resumed = sync(WOO, full=True)
    assert resumed.status is RunStatus.SUCCEEDED
    product_pages = [a["page"] for op, a in woo.calls if op == "products" and a["status"] == "any"]
    assert product_pages[0] == 4  # resumed at the page after the checkpoint, not from the start
    assert_woo_mirror(sqlite_engine, woo)
    total = len(woo.products) + sum(len(v) for v in woo.variations.values())
    assert result.counts.inserted + resumed.counts.inserted == total  # nothing stored twice
    assert state(sqlite_engine, WOO.value)["checkpoint"] == {}


def test_celery_soft_time_limit_mid_page_ends_the_run_resumable(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo, size=20)

    def time_up(op: str, args: dict[str, Any]) -> BaseException | None:
        return SoftTimeLimitExceeded() if op == "products" and args.get("page") == 4 else None

    woo.fail = time_up
    result = sync(WOO, full=True)
    assert (result.status, result.resumable, result.error) == (
        RunStatus.INTERRUPTED,
        True,
        "SoftTimeLimitExceeded",
    )
    row = runs(sqlite_engine)[-1]
    assert row["status"] == "interrupted" and row["details"]["resumable"] is True
    assert state(sqlite_engine, WOO.value)["checkpoint"]["full"]["page"] >= 2  # the pages before stand
    woo.fail = lambda op, args: None
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    assert_woo_mirror(sqlite_engine, woo)


def test_each_run_row_records_its_token_and_the_requests_it_serves(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    prefix = deps.settings.redis_key_prefix
    assert [next_request(deps.redis, prefix, WOO) for _ in range(2)] == [1, 2]
    sync(WOO, full=True)
    next_request(deps.redis, prefix, WOO)
    sync(WOO)
    first, second = runs(sqlite_engine)
    assert (first["fence"], first["serves_through"], first["details"]["resumable"]) == (1, 2, False)
    assert (second["fence"], second["serves_through"]) == (2, 3)
    assert state(sqlite_engine, WOO.value)["fence"] == 2


def test_breaker_open_before_anything_is_a_skip(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo)
    woo.fail = lambda op, args: CircuitOpenError("woocommerce", 42.0)
    result = sync(WOO)
    assert (result.status, result.retry_after, result.resumable) == (
        RunStatus.SKIPPED_BREAKER_OPEN,
        42.0,
        False,
    )
    assert len(woo.calls) == 1  # stopped at once
    run = runs(sqlite_engine)[-1]
    assert run["status"] == "skipped_breaker_open" and run["details"]["next_attempt_at"]
    (event,) = events.of("sync.skipped_breaker_open")
    assert event["payload"]["next_attempt_at"] == run["details"]["next_attempt_at"]


def test_breaker_opening_mid_run_keeps_the_checkpoint(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo, size=20)
    woo.fail = lambda op, args: CircuitOpenError("woocommerce", 5.0) if args.get("page") == 3 else None
    result = sync(WOO, full=True)
    assert result.status is RunStatus.INTERRUPTED and result.retry_after == 5.0 and not result.resumable
    assert state(sqlite_engine, WOO.value)["checkpoint"]["full"]["page"] == 2
    woo.fail = lambda op, args: None
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    assert_woo_mirror(sqlite_engine, woo)


def test_fatal_upstream_error_fails_the_run(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo)
    woo.fail = lambda op, args: FatalUpstreamError("401 cannot list", upstream="woocommerce", status_code=401)
    result = sync(WOO)
    assert result.status is RunStatus.FAILED and "401" in (result.error or "")
    assert runs(sqlite_engine)[-1]["status"] == "failed"
    assert events.of("sync.failed")


def test_variations_of_a_product_deleted_meanwhile_are_skipped(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    woo.fail = lambda op, args: (
        FatalUpstreamError("404", upstream="woocommerce", status_code=404)
        if args.get("product_id") == 104
        else None
    )
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED


def hold(deps: Any, mode: str = "incremental", task_id: str = "holder-task") -> RunLock:
    """A run of the source in progress elsewhere (another worker holds the lock)."""
    lock = RunLock(deps.redis, deps.settings.redis_key_prefix, WOO, 60, Holder.here(task_id, mode))
    assert isinstance(lock.acquire(), Acquired)
    return lock


def pending(deps: Any) -> dict[str, int]:
    raw = deps.redis.hgetall(followups_name(deps.settings.redis_key_prefix, WOO))
    return {k.decode(): int(v) for k, v in raw.items()}


def test_a_request_while_a_run_is_active_is_deferred_and_followed_up(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    holder = hold(deps, "full")
    result = sync(WOO)
    assert result.status is RunStatus.DEFERRED
    assert woo.calls == []  # nothing fetched, nothing written
    assert products(sqlite_engine) == {}
    expected_holder = {
        "host": holder.holder.host,
        "pid": holder.holder.pid,
        "task_id": "holder-task",
        "mode": "full",
    }
    assert (result.holder, result.coalesced) == (expected_holder, False)
    row = runs(sqlite_engine)[-1]
    details = {"holder": expected_holder, "followup": "incremental", "coalesced": False}
    assert (row["id"], row["status"], row["mode"], row["task_id"]) == (
        result.run_id,
        "deferred",
        "incremental",
        "task-1",
    )
    assert row["details"] == details and row["finished_at"] is not None
    (event,) = events.of("sync.deferred")
    assert event["payload"] == {"run_id": result.run_id, "full": False, "task_id": "task-1", **details}
    assert event["correlation_id"] == f"{WOO.value}:{result.run_id}"
    assert pending(deps) == {"incremental": 1, "incremental:requests": 1}

    assert holder.release() == ["incremental"]  # the holder hands the follow-up back at its end
    followup = sync(WOO)
    assert followup.status is RunStatus.SUCCEEDED
    assert pending(deps) == {}  # served
    assert_woo_mirror(sqlite_engine, woo)


def test_five_deferred_requests_coalesce_into_one_followup(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    holder = hold(deps)
    results = [sync(WOO, task_id=f"beat-{n}") for n in range(5)]
    assert [r.status for r in results] == [RunStatus.DEFERRED] * 5
    assert [r.coalesced for r in results] == [False, True, True, True, True]
    assert [r["details"]["coalesced"] for r in runs(sqlite_engine)] == [False, True, True, True, True]
    assert pending(deps) == {"incremental": 1, "incremental:requests": 5}
    assert holder.release() == ["incremental"]  # one follow-up run, not five

    dispatched: list[list[str]] = []
    assert sync(WOO, dispatch_followups=dispatched.append).status is RunStatus.SUCCEEDED
    assert dispatched == []  # the follow-up served them all
    assert pending(deps) == {}


def test_a_full_request_during_an_incremental_run_leaves_full_pending(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    holder = hold(deps, "incremental")
    deferred = sync(WOO, full=True)
    assert deferred.status is RunStatus.DEFERRED
    assert runs(sqlite_engine)[-1]["details"]["followup"] == "full"
    assert holder.release() == ["full"]

    # An incremental run (a beat tick) cannot serve a full request: the full follow-up stays owed.
    dispatched: list[list[str]] = []
    assert sync(WOO, dispatch_followups=dispatched.append).status is RunStatus.SUCCEEDED
    assert dispatched == [["full"]]
    assert pending(deps) == {"full": 1, "full:requests": 1}


def test_a_full_run_clears_both_followups(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    holder = hold(deps)
    assert sync(WOO).status is RunStatus.DEFERRED
    assert sync(WOO, full=True).status is RunStatus.DEFERRED
    assert holder.release() == ["full", "incremental"]

    dispatched: list[list[str]] = []
    assert sync(WOO, full=True, dispatch_followups=dispatched.append).status is RunStatus.SUCCEEDED
    assert pending(deps) == {}
    assert dispatched == []


def test_a_run_hands_the_requests_that_met_it_to_dispatch_followups(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    met: list[Any] = []

    def request_meanwhile(op: str, args: dict[str, Any]) -> None:
        if op == "products" and args.get("page") == 2 and not met:
            met.append(sync(WOO, task_id="manual"))  # another request for the source arrives
        return None

    woo.fail = request_meanwhile
    dispatched: list[list[str]] = []
    result = sync(WOO, full=True, dispatch_followups=dispatched.append)
    assert result.status is RunStatus.SUCCEEDED
    assert met[0].status is RunStatus.DEFERRED
    assert met[0].holder["task_id"] == "task-1" and met[0].holder["mode"] == "full"
    assert dispatched == [["incremental"]]  # enqueued once the lock was released
    assert not deps.redis.exists(lock_name(deps.settings.redis_key_prefix, WOO))


def test_a_followup_that_cannot_be_enqueued_stays_pending_for_the_next_run(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    met: list[Any] = []

    def request_meanwhile(op: str, args: dict[str, Any]) -> None:
        if op == "products" and args.get("page") == 2 and not met:
            met.append(sync(WOO, task_id="manual"))
        return None

    def broker_down(modes: list[str]) -> None:
        raise ConnectionError("broker unreachable")

    woo.fail = request_meanwhile
    assert sync(WOO, dispatch_followups=broker_down).status is RunStatus.SUCCEEDED  # the run's own outcome
    assert pending(deps) == {"incremental": 1, "incremental:requests": 1}
    woo.fail = lambda op, args: None
    assert sync(WOO).status is RunStatus.SUCCEEDED  # the next run of the source serves it
    assert pending(deps) == {}


def test_run_left_running_by_a_crash_is_closed_as_interrupted(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog, fake_redis: Any
) -> None:
    build_catalog(woo)

    def crash(op: str, args: dict[str, Any]) -> Exception | None:
        if args.get("page") == 2:
            raise SystemExit("worker killed")  # not an Exception: nothing in the engine catches it
        return None

    woo.fail = crash
    with pytest.raises(SystemExit):
        sync(WOO)
    crashed = runs(sqlite_engine)[-1]
    assert crashed["status"] == "running"
    for key in fake_redis.keys("*:lock:*"):
        fake_redis.delete(key)  # what the lock's TTL does once the dead worker stops renewing it
    woo.fail = lambda op, args: None
    result = sync(WOO)
    assert result.status is RunStatus.SUCCEEDED
    statuses = {r["id"]: r["status"] for r in runs(sqlite_engine)}
    assert statuses[crashed["id"]] == "interrupted"
    assert any(e["payload"]["run_id"] == crashed["id"] for e in events.of("sync.interrupted"))
    assert_woo_mirror(sqlite_engine, woo)


def test_lock_lost_mid_run_stops_writing(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, fake_redis: Any
) -> None:
    build_catalog(woo, size=20)

    def steal(op: str, args: dict[str, Any]) -> None:
        if args.get("page") == 3:
            for key in fake_redis.keys("*:lock:*"):
                fake_redis.set(key, "another-run")
        return None

    woo.fail = steal
    result = sync(WOO, full=True)
    assert result.status is RunStatus.INTERRUPTED
    assert "lost" in (result.error or "")


def test_database_failure_fails_the_run_and_counts_the_page(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_catalog(woo)
    from sqlalchemy.exc import OperationalError

    from worker.sync import context

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(context, "upsert_prepared", broken)
    with pytest.raises(OperationalError):
        sync(WOO, full=True)
    run = runs(sqlite_engine)[-1]
    # the first page: products 100-102 and the two variations of 100, stored together
    assert run["status"] == "failed" and run["failed"] == 5 and "disk I/O error" in run["error"]
    assert state(sqlite_engine, WOO.value)["last_status"] == "failed"
