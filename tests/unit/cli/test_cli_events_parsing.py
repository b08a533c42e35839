"""--since parsing and the --follow loop, with an injected sleep and fake pages."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
import pytest

from worker.cli.events import follow, parse_since

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("1d", NOW - dt.timedelta(days=1)),
        ("30s", NOW - dt.timedelta(seconds=30)),
        ("2026-02-28T10:00:00", dt.datetime(2026, 2, 28, 10, 0, tzinfo=dt.UTC)),
        ("2026-02-28T10:00:00+02:00", dt.datetime(2026, 2, 28, 8, 0, tzinfo=dt.UTC)),
    ],
    ids=["minutes", "hours", "days", "seconds", "naive-iso-is-utc", "iso-with-offset"],
)
def test_parse_since(text: str, expected: dt.datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "15", "5w", ""])
def test_parse_since_rejects_nonsense_naming_the_option(text: str) -> None:
    with pytest.raises(click.BadParameter, match="duration"):
        parse_since(text, NOW)


def test_follow_prints_each_new_event_once_in_id_order() -> None:
    store = [{"id": 5, "event_type": "a"}]
    seen: list[int] = []
    sleeps: list[float] = []
    polls: list[int] = []

    def poll(after: int) -> list[dict[str, Any]]:
        polls.append(after)
        return [e for e in store if e["id"] > after]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        # New rows arrive between polls, as another process writes them.
        if len(sleeps) == 1:
            store.extend([{"id": 6, "event_type": "b"}, {"id": 9, "event_type": "c"}])

    last = follow(
        poll, lambda e: seen.append(e["id"]), after_id=4, sleep=sleep, keep_going=lambda: len(sleeps) < 3
    )
    assert seen == [5, 6, 9]
    assert polls == [4, 5, 9]
    assert last == 9
    assert sleeps == [1.0, 1.0, 1.0]
