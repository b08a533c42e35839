"""The interval behind the "no success within twice its interval" alerts, from the beat schedule."""

from __future__ import annotations

from typing import Any

import pytest

from worker.celeryapp.schedule import longest_gap_seconds, parse_cron, sync_intervals
from worker.sources.catalog import environment_sources

HOUR = 3600
DAY = 24 * HOUR


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 3 * * *", DAY),
        ("*/15 * * * *", 15 * 60),
        ("0 3 * * 1-5", 3 * DAY),  # Friday 03:00 to Monday 03:00
        ("0 9,17 * * *", 16 * HOUR),  # 17:00 to the next day's 09:00
        ("0 0,12 * * 6", 6 * DAY + 12 * HOUR),
        ("0 0 31 * *", 61 * DAY),  # skips every month without a 31st
        ("0 0 1 1 *", 366 * DAY),  # a leap year
        ("0 0 29 2 *", None),  # once in four years: too rare to alert on
    ],
    ids=["nightly", "quarter-hourly", "weekdays", "twice-daily", "saturdays", "31st", "yearly", "leap-day"],
)
def test_longest_gap_between_firings(cron: str, gap: int | None) -> None:
    assert longest_gap_seconds(parse_cron(cron)) == gap


def test_intervals_cover_the_configured_sources_only(settings_factory: Any) -> None:
    settings = settings_factory(
        woocommerce_url="http://127.0.0.1:9",
        woocommerce_consumer_key="ck_0123456789abcdef",
        woocommerce_consumer_secret="cs_0123456789abcdef",
        sync_incremental_interval_seconds=120,
        sync_full_cron="30 2 * * 0",
    )
    assert sync_intervals(settings, environment_sources(settings)) == {
        ("woocommerce-products", "incremental"): 120.0,
        ("woocommerce-products", "full"): 7.0 * DAY,
    }
    assert sync_intervals(settings_factory(), environment_sources(settings_factory())) == {}
