"""run_sync for Odoo suppliers: id pages, supplier_rank drift, archive, reconciliation, resume."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sync_fakes import FakeClock, FakeEventLog, FakeOdoo
from sync_mirror import assert_odoo_mirror, runs, state, suppliers

from worker.infra.errors import CircuitOpenError, RetriableUpstreamError
from worker.kinds.odoo.paging import OdooCursor
from worker.kinds.odoo.passes import dump_cursor, load_cursor
from worker.sync import RunStatus, SyncSource

ODOO = SyncSource.ODOO_SUPPLIERS


def build(odoo: FakeOdoo, size: int = 10) -> None:
    for pid in range(1, size + 1):
        odoo.add(pid)
    odoo.add(size + 1, supplier_rank=0, write_date="2025-06-01 00:00:00")  # an old customer


def test_full_sync_mirrors_suppliers(sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine) -> None:
    build(odoo)
    started = odoo.clock.now
    result = sync(ODOO, full=True)
    assert result.status is RunStatus.SUCCEEDED and result.counts.inserted == 10
    assert_odoo_mirror(sqlite_engine, odoo)
    # The watermark is the upstream's clock at the pass start, not the newest write_date seen:
    # returned stamps are truncated, and rows written mid-pass below the id passed need a window.
    assert state(sqlite_engine, ODOO.value)["watermark"] == started


def test_incremental_sees_writes_archives_and_rank_drift(
    sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine, clock: FakeClock, events: FakeEventLog
) -> None:
    build(odoo)
    sync(ODOO, full=True)
    clock.tick(3600)
    odoo.write(3, email="new@supplier.test")
    odoo.write(4, active=False)  # archived partners still come back (active_test=False)
    odoo.raise_rank_by_sql(11)  # the customer becomes a supplier without a write_date bump
    odoo.add(12)
    before = suppliers(sqlite_engine)
    result = sync(ODOO)
    assert result.status is RunStatus.SUCCEEDED
    assert_odoo_mirror(sqlite_engine, odoo)
    after = suppliers(sqlite_engine)
    changed = {
        k for k in after if k not in before or after[k]["last_synced_at"] != before[k]["last_synced_at"]
    }
    assert changed == {3, 4, 11, 12}
    assert events.of("sync.drift_detected")[0]["payload"]["new_ids"] == 1
    assert [op for op, _ in odoo.calls].count("read") == 1


def test_noop_incremental_writes_nothing(
    sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine
) -> None:
    build(odoo)
    sync(ODOO, full=True)
    before = suppliers(sqlite_engine)
    result = sync(ODOO)
    assert result.counts.written == 0 and result.counts.fetched > 0  # the overlap window was re-read
    assert suppliers(sqlite_engine) == before


def test_full_run_marks_unlinked_and_demoted_suppliers(
    sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine
) -> None:
    build(odoo)
    sync(ODOO, full=True)
    del odoo.partners[2]  # unlink: a hard delete, no tombstone
    odoo.partners[5]["supplier_rank"] = 0
    assert sync(ODOO).counts.marked_deleted == 0
    assert sync(ODOO, full=True).counts.marked_deleted == 2
    assert_odoo_mirror(sqlite_engine, odoo, deleted=frozenset({2, 5}))
    odoo.raise_rank_by_sql(5)  # a supplier again: drift brings it back and clears the tombstone
    sync(ODOO)
    assert_odoo_mirror(sqlite_engine, odoo, deleted=frozenset({2}))


def test_empty_id_set_marks_nothing(
    sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build(odoo)
    sync(ODOO, full=True)
    for partner in odoo.partners.values():
        partner["supplier_rank"] = 0
    result = sync(ODOO, full=True)
    assert result.counts.marked_deleted == 0
    assert all(r["deleted_at"] is None for r in suppliers(sqlite_engine).values())
    # A full run that could not reconcile cannot vouch for the mirror: it ends partial.
    assert result.status is RunStatus.PARTIAL
    assert runs(sqlite_engine)[-1]["status"] == "partial"
    (skipped,) = events.of("sync.reconcile_skipped")
    assert skipped["payload"]["reason"] == "upstream listed no suppliers"
    assert state(sqlite_engine, ODOO.value)["checkpoint"] == {}


def test_an_empty_id_set_on_an_incremental_run_is_only_noted(
    sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine, events: FakeEventLog
) -> None:
    build(odoo)
    sync(ODOO, full=True)
    for partner in odoo.partners.values():
        partner["supplier_rank"] = 0
    result = sync(ODOO)  # an incremental run vouches for its window only, never for deletions
    assert result.status is RunStatus.SUCCEEDED
    assert result.counts.marked_deleted == 0
    (skipped,) = events.of("sync.reconcile_skipped")
    assert skipped["payload"]["reason"] == "upstream listed no suppliers"


def test_stop_and_resume(sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine) -> None:
    build(odoo, size=20)
    polls = iter(range(100))
    first = sync(ODOO, full=True, should_stop=lambda: next(polls) == 1)
    assert first.status is RunStatus.INTERRUPTED and first.resumable
    cp = state(sqlite_engine, ODOO.value)["checkpoint"]["full"]
    assert cp["cursor"]["after_id"] == 6
    odoo.calls.clear()
    second = sync(ODOO, full=True)
    assert second.status is RunStatus.SUCCEEDED
    assert odoo.calls[0] == ("pages", {"after_id": 6})
    assert first.counts.inserted + second.counts.inserted == 20
    assert_odoo_mirror(sqlite_engine, odoo)
    # A resumed pass keeps the upstream clock read when it first started, not a later one.
    started = dt.datetime.fromisoformat(cp["upstream_started_at"])
    assert state(sqlite_engine, ODOO.value)["watermark"] == started
    # ... and serves the requests made before it first started, not the one that resumed it.
    assert cp["serves_through"] == 1
    assert [r["serves_through"] for r in runs(sqlite_engine)] == [1, 1]
    assert state(sqlite_engine, ODOO.value)["requests"] == 2


def test_breaker_open_and_failures(sync: Callable[..., Any], odoo: FakeOdoo, sqlite_engine: Engine) -> None:
    build(odoo)
    odoo.fail = lambda op, args: CircuitOpenError("odoo", 30.0)
    assert sync(ODOO).status is RunStatus.SKIPPED_BREAKER_OPEN
    odoo.fail = lambda op, args: (
        RetriableUpstreamError("timeout", upstream="odoo") if op == "search_ids" else None
    )
    failed = sync(ODOO)
    assert failed.status is RunStatus.FAILED
    assert [r["status"] for r in runs(sqlite_engine)] == ["skipped_breaker_open", "failed"]
    odoo.fail = lambda op, args: None
    assert sync(ODOO).status is RunStatus.SUCCEEDED  # resumes at the id phase
    assert_odoo_mirror(sqlite_engine, odoo)


def test_cursor_checkpoints_round_trip_and_old_ones_still_load() -> None:
    since = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    for cursor in (OdooCursor(after_id=7), OdooCursor(after_id=7, since=since)):
        assert load_cursor(dump_cursor(cursor)) == cursor
    # A (write_date, id) keyset checkpoint from before: every row it had not read was written at
    # or after its stamp, with any id, so it resumes from id 0 inside that window.
    old = {"after_id": 40, "write_date": "2026-01-01T12:00:00+00:00"}
    assert load_cursor(old) == OdooCursor(after_id=0, since=since)
    assert load_cursor({"after_id": 40, "write_date": None}) == OdooCursor(after_id=40)
    assert load_cursor(None) is None
