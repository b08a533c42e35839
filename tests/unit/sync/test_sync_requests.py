"""Request numbers live in the database, next to the ``serves_through`` of the runs that serve them:
numbered per source, in order, and never made to look served by losing Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
from sqlalchemy import Engine, event
from sync_fakes import FakeWoo
from sync_mirror import runs, state

from worker.infra.db import make_session_factory
from worker.sync import RunStatus, SyncSource, fence
from worker.sync.context import transaction
from worker.sync.requests import number_request
from worker.sync.runs import served_by

WOO = SyncSource.WOOCOMMERCE_PRODUCTS
ODOO = SyncSource.ODOO_SUPPLIERS


def served(engine: Engine, request: int, *, full: bool = False, source: SyncSource = WOO) -> int | None:
    with engine.connect() as conn:
        return served_by(conn, source, request=request, full=full)


def test_requests_are_numbered_in_order_per_source(sqlite_engine: Engine) -> None:
    sessions = make_session_factory(sqlite_engine)
    assert [number_request(sessions, WOO) for _ in range(3)] == [1, 2, 3]
    assert number_request(sessions, ODOO) == 1  # each source counts its own
    assert number_request(sessions, WOO) == 4
    assert (state(sqlite_engine, WOO.value)["requests"], state(sqlite_engine, ODOO.value)["requests"]) == (
        4,
        1,
    )


def test_a_number_is_committed_before_it_is_handed_out(sqlite_engine: Engine) -> None:
    sessions = make_session_factory(sqlite_engine)
    number = number_request(sessions, WOO)
    # Another connection (another worker, the CLI) sees it at once: a later claim cannot miss it.
    assert state(sqlite_engine, WOO.value)["requests"] == number
    with transaction(sessions) as conn:
        token, requests = fence.claim(conn, WOO)
    assert (token, requests) == (1, number)


def test_a_claim_reports_the_requests_made_so_far_without_numbering_one(sqlite_engine: Engine) -> None:
    sessions = make_session_factory(sqlite_engine)
    with transaction(sessions) as conn:
        assert fence.claim(conn, WOO) == (1, 0)  # first token; no request yet
    number_request(sessions, WOO)
    number_request(sessions, WOO)
    with transaction(sessions) as conn:
        assert fence.claim(conn, WOO) == (2, 2)
        assert fence.claim(conn, ODOO) == (1, 0)
    assert number_request(sessions, WOO) == 3  # a claim does not use up a number


def test_a_rolled_back_number_is_not_handed_out(sqlite_engine: Engine) -> None:
    sessions = make_session_factory(sqlite_engine)
    number_request(sessions, WOO)
    try:
        with transaction(sessions) as conn:
            fence.next_request(conn, WOO)
            raise RuntimeError("the message could not be built")
    except RuntimeError:
        pass
    assert number_request(sessions, WOO) == 2


def test_a_run_serves_the_requests_numbered_before_it_started(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine
) -> None:
    woo.add_product(100)
    sessions = make_session_factory(sqlite_engine)
    first, second = number_request(sessions, WOO), number_request(sessions, WOO)
    assert sync(WOO, request=first).status is RunStatus.SUCCEEDED
    (row,) = runs(sqlite_engine)
    assert row["serves_through"] == second  # the second request was made before the run started
    assert served(sqlite_engine, first) == served(sqlite_engine, second) == row["id"]
    later = number_request(sessions, WOO)  # made after the run started
    assert served(sqlite_engine, later) is None
    assert served(sqlite_engine, first, full=True) is None  # an incremental run serves no full request
    assert served(sqlite_engine, first, source=ODOO) is None


def test_a_redis_flush_cannot_make_a_request_look_served(
    sync: Callable[..., Any], woo: FakeWoo, sqlite_engine: Engine, fake_redis: fakeredis.FakeRedis
) -> None:
    woo.add_product(100)
    sessions = make_session_factory(sqlite_engine)
    for _ in range(3):
        assert sync(WOO, full=True).status is RunStatus.SUCCEEDED
    assert max(r["serves_through"] for r in runs(sqlite_engine)) == 3
    fake_redis.flushall()  # a Redis failover or flush: numbers do not start again at 1
    request = number_request(sessions, WOO)
    assert request == 4
    assert served(sqlite_engine, request) is None  # above every serves_through: still to be served
    assert sync(WOO, request=request).status is RunStatus.SUCCEEDED
    assert served(sqlite_engine, request) == runs(sqlite_engine)[-1]["id"]


def test_two_first_requests_for_a_source_at_once_are_both_numbered(sqlite_engine: Engine) -> None:
    sessions = make_session_factory(sqlite_engine)
    other: list[int] = []

    def another_process_numbers_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Between this transaction's check for the row and its insert of it.
        if statement.startswith("INSERT INTO sync_state") and not other:
            other.append(0)
            other[0] = number_request(sessions, WOO)

    event.listen(sqlite_engine, "before_cursor_execute", another_process_numbers_first)
    try:
        mine = number_request(sessions, WOO)
    finally:
        event.remove(sqlite_engine, "before_cursor_execute", another_process_numbers_first)
    assert sorted([mine, *other]) == [1, 2]
