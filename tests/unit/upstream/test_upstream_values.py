"""Pure helpers: Odoo values, the Odoo keyset cursor and WooCommerce page numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.infra.errors import FatalUpstreamError
from worker.kinds.odoo.paging import OdooCursor
from worker.kinds.odoo.values import many2one_id, odoo_value, parse_odoo_datetime
from worker.kinds.woocommerce.client import woo_datetime
from worker.kinds.woocommerce.paging import PageNumbers


def test_odoo_false_is_null_except_for_booleans() -> None:
    assert odoo_value(False) is None
    assert odoo_value(False, "char") is None
    assert odoo_value(False, "boolean") is False
    assert odoo_value(0) == 0 and odoo_value("x") == "x"


@pytest.mark.parametrize(
    ("raw", "want"), [([21, "Belgium"], 21), (False, None), (None, None), (5, 5), ([], None)]
)
def test_many2one_id(raw: object, want: int | None) -> None:
    assert many2one_id(raw) == want


def test_odoo_datetimes_are_aware_utc() -> None:
    assert parse_odoo_datetime("2026-03-01 12:30:05") == datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
    assert parse_odoo_datetime(False) is None
    plus2 = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_odoo_datetime(plus2) == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_woo_datetimes_are_naive_utc_strings() -> None:
    plus2 = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert woo_datetime(plus2) == "2026-03-01T12:00:00"
    assert woo_datetime(datetime(2026, 3, 1, 12, 0)) == "2026-03-01T12:00:00"


def test_odoo_cursor_domains() -> None:
    assert OdooCursor(after_id=5).domain() == [("id", ">", 5)]
    since = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    start = OdooCursor.starting(since, timedelta(minutes=2))
    assert start.since == datetime(2026, 1, 1, 0, 8, tzinfo=UTC)
    # Ids inside a fixed date filter: Odoo returns write_date truncated to the second but filters
    # on the stored microseconds, so a (write_date, id) keyset cannot get past a busy second.
    assert start.domain() == [("write_date", ">=", "2026-01-01 00:08:00"), ("id", ">", 0)]
    assert start.order() == "id asc" and OdooCursor().order() == "id asc"


def test_odoo_cursor_advances_by_id_and_refuses_to_loop() -> None:
    start = OdooCursor.starting(datetime(2026, 1, 1, tzinfo=UTC), timedelta(0))
    same_second = [{"id": i, "write_date": "2026-01-01 00:00:00"} for i in (3, 9)]
    nxt = start.advance(same_second)
    assert nxt == OdooCursor(after_id=9, since=start.since)
    assert nxt.advance([]) == nxt
    with pytest.raises(FatalUpstreamError, match="did not advance"):
        nxt.advance(same_second)  # a server ignoring the cursor serves the same page again
    assert nxt.advance([{"id": 12}]).after_id == 12  # write_date is not needed to page


def test_page_numbers() -> None:
    numbers = PageNumbers(next_page=1)
    assert numbers.unknown_remaining() and not numbers.known_remaining()
    assert numbers.take() == 1
    numbers.observe(1, 100, 100, 3)
    assert [numbers.take() for _ in range(2)] == [2, 3] and not numbers.known_remaining()
    headerless = PageNumbers()
    headerless.observe(headerless.take(), 40, 100, None)
    assert not headerless.unknown_remaining()
