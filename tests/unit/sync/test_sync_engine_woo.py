"""run_sync for WooCommerce against an in-process catalog, SQLite and fakeredis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine, text
from sync_fakes import FakeClock, FakeEventLog, FakeWoo, Page
from sync_mirror import assert_woo_mirror, products, runs, state

from worker.infra.errors import CircuitOpenError, FatalUpstreamError, RetriableUpstreamError
from worker.sync import RunStatus, SyncSource, run_sync
from worker.sync.lock import Acquired, Deferred, Holder, RunLock, followups_name, lock_name
from worker.sync.requests import number_request
from worker.sync.runs import served_by

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


def seen_ids(engine: Engine) -> list[int]:
    """The ids a reconciliation listed and keeps across deliveries (``sync_reconcile_ids``)."""
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(text("SELECT id FROM sync_reconcile_ids ORDER BY id")).scalars()]


def test_empty_or_failing_listing_never_marks_deleted(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo)
    sync(WOO, full=True)
    saved = dict(woo.products)
    woo.products.clear()  # an upstream that suddenly lists nothing
    result = sync(WOO, full=True)
    assert result.counts.marked_deleted == 0
    assert all(r["deleted_at"] is None for r in products(sqlite_engine).values())
    # It cannot vouch for the mirror: the run is partial, and says why.
    assert result.status is RunStatus.PARTIAL
    assert runs(sqlite_engine)[-1]["status"] == "partial"
    (skipped,) = events.of("sync.reconcile_skipped")
    assert skipped["payload"]["reason"] == "upstream listed no products"
    assert state(sqlite_engine, WOO.value)["checkpoint"] == {}  # the pass ended: nothing to resume
    assert seen_ids(sqlite_engine) == []
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
    result = sync(WOO)  # the first run reads the whole catalog
    assert result.status is RunStatus.PARTIAL
    assert result.counts.skipped == 1
    assert 105 not in products(sqlite_engine) and 106 in products(sqlite_engine)
    (event,) = events.of("woocommerce.sync.record_invalid")
    assert event["payload"]["id"] == "105" and "price" in event["payload"]["reason"]
    assert event["correlation_id"] == f"{WOO.value}:{result.run_id}"
    assert runs(sqlite_engine)[-1]["status"] == "partial"


def test_a_full_run_counts_an_invalid_record_once(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo)
    woo.change(105, price="twelve")
    result = sync(WOO, full=True)
    assert result.status is RunStatus.PARTIAL
    n = len(woo.products) + sum(len(v) for v in woo.variations.values())
    assert (result.counts.fetched, result.counts.skipped) == (n, 1)
    assert len(events.of("woocommerce.sync.record_invalid")) == 1
    assert runs(sqlite_engine)[-1]["skipped"] == 1


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
    assert [number_request(deps.session_factory, WOO) for _ in range(2)] == [1, 2]
    sync(WOO, full=True, request=1)
    sync(WOO, request=number_request(deps.session_factory, WOO))
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
    assert isinstance(lock.acquire(number_request(deps.session_factory, WOO)), Acquired)
    return lock


def pending(deps: Any) -> dict[str, int]:
    """The follow-ups waiting per mode: the highest request number each one owes a run to."""
    raw = deps.redis.hgetall(followups_name(deps.settings.redis_key_prefix, WOO))
    return {k.decode(): int(v) for k, v in raw.items() if k != b"dispatched_at"}


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
    assert pending(deps) == {"incremental": 2}  # request 1 is the holder's, 2 this one's

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
    assert pending(deps) == {"incremental": 6}  # the newest of requests 2-6
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
    assert pending(deps) == {"full": 2}


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
    assert pending(deps) == {"incremental": 2}
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
    for key in fake_redis.keys("*:lock"):
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
            for key in fake_redis.keys("*:lock"):
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


# -- the requests a pass serves ------------------------------------------------------------------


def served(engine: Engine, request: int, *, full: bool = False) -> int | None:
    with engine.connect() as conn:
        return served_by(conn, WOO, request=request, full=full)


def test_a_resumed_pass_serves_only_what_its_fresh_start_served(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo, size=20)
    deps = make_deps(woo)
    first = number_request(deps.session_factory, WOO)
    met: list[Any] = []

    def request_meanwhile(op: str, args: dict[str, Any]) -> None:
        if op == "products" and args.get("page") == 2 and not met:
            met.append(sync(WOO, task_id="manual"))  # request 2 meets the run: deferred
        return None

    woo.fail = request_meanwhile
    polls = iter(range(1000))
    dispatched: list[list[str]] = []
    handed_back = sync(WOO, full=True, request=first, should_stop=lambda: next(polls) == 2,
                       dispatch_followups=dispatched.append)  # fmt: skip
    assert (handed_back.status, handed_back.resumable) == (RunStatus.INTERRUPTED, True)
    assert met[0].status is RunStatus.DEFERRED
    assert dispatched == []  # the pass goes on in its own message: the follow-up waits for its end
    assert pending(deps) == {"incremental": 2}
    assert state(sqlite_engine, WOO.value)["checkpoint"]["full"]["serves_through"] == first

    woo.fail = lambda op, args: None
    resumed = sync(WOO, full=True, request=first, dispatch_followups=dispatched.append)
    assert resumed.status is RunStatus.SUCCEEDED
    passes = [r for r in runs(sqlite_engine) if r["status"] != "deferred"]
    assert [r["serves_through"] for r in passes] == [first, first]  # not the 2 numbered meanwhile
    assert served(sqlite_engine, first) == resumed.run_id
    assert served(sqlite_engine, 2) is None  # its pass started before request 2 was made
    assert pending(deps) == {"incremental": 2}  # not cleared by the resumed pass ...
    assert dispatched == [["incremental"]]  # ... and handed on when it really ended
    assert_woo_mirror(sqlite_engine, woo)

    followup = sync(WOO, dispatch_followups=dispatched.append)  # the follow-up message: a fresh pass
    assert followup.status is RunStatus.SUCCEEDED
    assert served(sqlite_engine, 2) == followup.run_id
    assert pending(deps) == {}
    assert dispatched == [["incremental"]]


def test_a_fresh_pass_clears_only_the_followups_numbered_up_to_what_it_serves(
    sync: Callable[..., Any],
    make_deps: Any,
    woo: FakeWoo,
    sqlite_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build_catalog(woo)
    deps = make_deps(woo)
    prefix = deps.settings.redis_key_prefix
    holder = hold(deps)  # request 1
    assert sync(WOO, full=True).status is RunStatus.DEFERRED  # request 2
    assert sync(WOO).status is RunStatus.DEFERRED  # request 3
    assert holder.release() == ["full", "incremental"]
    assert pending(deps) == {"full": 2, "incremental": 3}

    dispatched: list[list[str]] = []
    assert sync(WOO, dispatch_followups=dispatched.append).status is RunStatus.SUCCEEDED  # request 4
    assert runs(sqlite_engine)[-1]["serves_through"] == 4
    assert pending(deps) == {"full": 2}  # an incremental pass serves no full request
    assert dispatched == [["full"]]

    # A request numbered just after the next pass claimed the source meets that pass's lock before the
    # pass clears what it serves: its number is above the pass's, so it stays owed.
    late: list[tuple[int, Any]] = []
    clear_served = RunLock.clear_served

    def request_after_the_claim(self: RunLock, serves_through: int, full: bool) -> None:
        if not late:
            number = number_request(deps.session_factory, WOO)
            other = RunLock(deps.redis, prefix, WOO, 60, Holder.here("late", "incremental"))
            late.append((number, other.acquire(number)))
        clear_served(self, serves_through, full)

    monkeypatch.setattr(RunLock, "clear_served", request_after_the_claim)
    assert sync(WOO, full=True, dispatch_followups=dispatched.append).status is RunStatus.SUCCEEDED
    assert runs(sqlite_engine)[-1]["serves_through"] == 5
    ((number, met),) = late
    assert number == 6 and isinstance(met, Deferred)
    assert pending(deps) == {"incremental": 6}  # the full follow-up (2) was served, 6 was not
    assert dispatched == [["full"], ["incremental"]]
    assert served(sqlite_engine, 2, full=True) == runs(sqlite_engine)[-1]["id"]
    assert served(sqlite_engine, 6) is None


def test_a_run_that_cannot_claim_the_source_dispatches_nothing(
    sync: Callable[..., Any],
    make_deps: Any,
    woo: FakeWoo,
    sqlite_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The state row stayed locked by a stalled run's page (lock_timeout on PostgreSQL): the delivery is
    # handed back, leaving no run row, and the follow-ups wait for a run that really ends.
    from sqlalchemy.exc import OperationalError

    from worker.sync import engine

    build_catalog(woo)
    deps = make_deps(woo)
    deps.redis.hset(followups_name(deps.settings.redis_key_prefix, WOO), "incremental", 1)

    def locked(conn: Any, source: SyncSource) -> Any:
        raise OperationalError("UPDATE sync_state", {}, Exception("canceling statement due to lock timeout"))

    monkeypatch.setattr(engine.fence, "claim", locked)
    dispatched: list[list[str]] = []
    result = sync(WOO, dispatch_followups=dispatched.append)
    assert (result.status, result.resumable, result.run_id) == (RunStatus.INTERRUPTED, True, None)
    assert "locked" in (result.error or "")
    assert runs(sqlite_engine) == []
    assert dispatched == []
    assert pending(deps) == {"incremental": 1}
    assert not deps.redis.exists(lock_name(deps.settings.redis_key_prefix, WOO))  # released
    assert woo.calls == []


def test_a_run_stopped_for_good_still_dispatches_its_followups(
    sync: Callable[..., Any], make_deps: Any, woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo, size=20)
    deps = make_deps(woo)
    met: list[Any] = []

    def breaker_opens(op: str, args: dict[str, Any]) -> Exception | None:
        if op == "products" and args.get("page") == 2 and not met:
            met.append(sync(WOO, task_id="manual"))
        if op == "products" and args.get("page") == 3:
            return CircuitOpenError("woocommerce", 5.0)
        return None

    woo.fail = breaker_opens
    dispatched: list[list[str]] = []
    result = sync(WOO, full=True, dispatch_followups=dispatched.append)
    assert (result.status, result.resumable) == (RunStatus.INTERRUPTED, False)  # no message continues it
    assert dispatched == [["incremental"]]
    assert pending(deps) == {"incremental": 2}


# -- the reconciliation's steps ------------------------------------------------------------------


class SlidingWoo(FakeWoo):
    """A catalog whose product listing misses some products, as a page-number listing does when a
    product slides onto a page already read; the id listing and direct reads (``include=``) see them."""

    def __init__(self, clock: FakeClock, hidden: set[int]) -> None:
        super().__init__(clock)
        self.hidden = hidden
        self.direct_reads: list[list[int]] = []

    def iter_product_pages(self, *, include: Any = None, **kwargs: Any) -> Any:
        pages = super().iter_product_pages(include=include, **kwargs)
        if include is not None:
            self.direct_reads.append(list(include))
            return pages
        return (
            Page([r for r in p.records if r["id"] not in self.hidden], p.page, p.total_pages, p.total)
            for p in pages
        )


class UnidentifiedWoo(FakeWoo):
    """The second page of the ``status=any`` id listing carries a record without a usable id."""

    def list_product_ids(self, status: str = "any", start_page: int = 1) -> Any:
        for number, ids in super().list_product_ids(status, start_page):
            yield number, ids + ([None] if status == "any" and number == 2 else [])


def run_full(make_deps: Any, client: FakeWoo) -> Any:
    """A full run against ``client`` (a catalog the ``sync`` fixture does not use)."""
    deps = make_deps(client)
    request = number_request(deps.session_factory, WOO)
    return run_sync(WOO, deps, full=True, task_id="task-1", request=request, should_stop=lambda: False)


def test_fill_stores_listed_products_the_product_listing_missed(
    make_deps: Any, clock: FakeClock, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    woo = SlidingWoo(clock, hidden={104, 105})
    build_catalog(woo)
    result = run_full(make_deps, woo)
    assert result.status is RunStatus.SUCCEEDED
    assert_woo_mirror(sqlite_engine, woo)  # 104 with its variations, and 105, are mirrored
    (filled,) = events.of("sync.reconcile_filled")
    assert filled["payload"]["unmirrored"] == 2
    assert woo.direct_reads == [[104, 105], [104, 105]]  # read directly, in both statuses
    assert result.counts.marked_deleted == 0
    assert seen_ids(sqlite_engine) == []

    woo.hidden.clear()
    again = run_full(make_deps, woo)
    assert again.counts.written == 0
    assert len(events.of("sync.reconcile_filled")) == 1  # nothing left to fill


def test_fill_restores_a_mirror_row_lost_locally(
    make_deps: Any, clock: FakeClock, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    woo = SlidingWoo(clock, hidden=set())
    build_catalog(woo)
    assert run_full(make_deps, woo).status is RunStatus.SUCCEEDED
    with sqlite_engine.begin() as conn:
        conn.execute(text("DELETE FROM products WHERE woo_id IN (108, 1081, 1082)"))
    woo.hidden.add(108)  # and it slid between two pages of the next full run's listing
    assert run_full(make_deps, woo).status is RunStatus.SUCCEEDED
    assert_woo_mirror(sqlite_engine, woo)
    assert events.of("sync.reconcile_filled")[-1]["payload"]["unmirrored"] == 1
    assert woo.direct_reads == [[108], [108]]


def test_a_finished_reconciliation_is_not_redone_by_a_resumed_pass(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.sync import engine
    from worker.sync.lock import LockLost

    build_catalog(woo)
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    del woo.products[101]  # force-deleted upstream
    complete_pass = engine.complete_pass
    lost: list[bool] = []

    def lost_before_the_pass_completes(*args: Any, **kwargs: Any) -> None:
        if not lost:
            lost.append(True)
            raise LockLost("the run lost its lock")
        complete_pass(*args, **kwargs)

    monkeypatch.setattr(engine, "complete_pass", lost_before_the_pass_completes)
    cut = sync(WOO, full=True)
    assert (cut.status, cut.resumable, cut.counts.marked_deleted) == (RunStatus.INTERRUPTED, True, 1)
    checkpoint = state(sqlite_engine, WOO.value)["checkpoint"]["full"]
    assert (checkpoint["phase"], checkpoint["step"]) == ("reconcile", "done")
    assert seen_ids(sqlite_engine) == []  # cleared with the verdicts, in the done step's transaction

    woo.calls.clear()
    resumed = sync(WOO, full=True)
    assert resumed.status is RunStatus.SUCCEEDED
    assert woo.calls == []  # nothing listed, nothing read again
    assert resumed.counts.marked_deleted == 0
    assert state(sqlite_engine, WOO.value)["checkpoint"] == {}
    assert_woo_mirror(sqlite_engine, woo, deleted=frozenset({101}))


def test_a_reconciliation_handed_back_mid_listing_resumes_at_the_next_page(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    build_catalog(woo)
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED

    def after_the_second_id_page() -> bool:
        op, args = woo.calls[-1]
        return op == "ids" and args["status"] == "any" and args["page"] == 2

    cut = sync(WOO, full=True, should_stop=after_the_second_id_page)
    assert (cut.status, cut.resumable) == (RunStatus.INTERRUPTED, True)
    checkpoint = state(sqlite_engine, WOO.value)["checkpoint"]["full"]
    assert (checkpoint["phase"], checkpoint["step"], checkpoint["page"]) == ("reconcile", "any", 2)
    assert seen_ids(sqlite_engine) == list(range(100, 106))  # the ids of the pages committed

    del woo.products[109]  # deleted between the deliveries, on a page not listed yet
    woo.calls.clear()
    resumed = sync(WOO, full=True)
    assert resumed.status is RunStatus.SUCCEEDED
    id_pages = [(a["status"], a["page"]) for op, a in woo.calls if op == "ids"]
    assert id_pages[0] == ("any", 3)
    assert resumed.counts.marked_deleted == 1
    assert_woo_mirror(sqlite_engine, woo, deleted=frozenset({109}))
    assert seen_ids(sqlite_engine) == []


def test_a_listed_record_without_an_id_ends_the_full_run_partial(
    make_deps: Any, clock: FakeClock, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    woo = UnidentifiedWoo(clock)
    build_catalog(woo)
    assert run_full(make_deps, woo).status is RunStatus.PARTIAL
    del woo.products[101]
    result = run_full(make_deps, woo)
    assert result.status is RunStatus.PARTIAL
    assert (result.counts.skipped, result.counts.marked_deleted) == (0, 0)  # nothing proven gone
    reasons = [e["payload"]["reason"] for e in events.of("sync.reconcile_skipped")]
    assert reasons == ["a product in the id listing has no usable id"] * 2
    assert state(sqlite_engine, WOO.value)["checkpoint"] == {}
    assert seen_ids(sqlite_engine) == []
    assert products(sqlite_engine)[101]["deleted_at"] is None


def test_a_pass_that_skipped_a_record_in_an_earlier_delivery_keeps_the_watermark(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build_catalog(woo, size=20)
    assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    before = state(sqlite_engine, WOO.value)["watermark"]
    first = min(woo.products)
    woo.change(first, price="twelve")  # on the first page: the first delivery skips it
    woo.clock.tick(3600)
    polls = iter(range(1000))
    cut = sync(WOO, full=True, should_stop=lambda: next(polls) == 2)
    assert cut.status is RunStatus.INTERRUPTED and cut.counts.skipped == 1
    woo.clock.tick(3600)
    resumed = sync(WOO, full=True)  # skips nothing itself
    assert resumed.counts.skipped == 0
    # The malformed record's edit is older than this pass: the next incremental run must still read it.
    assert state(sqlite_engine, WOO.value)["watermark"] == before
    assert events.of("sync.watermark_held")
