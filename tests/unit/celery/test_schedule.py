"""Beat entries: only configured upstreams, intervals and cron from settings, stale ticks expire."""

from __future__ import annotations

from typing import Any

import pytest
from celery.schedules import crontab

from worker.celeryapp.schedule import ScheduleError, build_beat_schedule, parse_cron

WOO = {
    "woocommerce_url": "http://127.0.0.1:8080",
    "woocommerce_consumer_key": "ck_12345678",
    "woocommerce_consumer_secret": "cs_12345678",
}
ODOO = {
    "odoo_url": "http://127.0.0.1:8069",
    "odoo_db": "db",
    "odoo_username": "admin",
    "odoo_api_key": "0123456789abcdef",
}


def test_nothing_configured_nothing_scheduled(settings_factory: Any) -> None:
    assert build_beat_schedule(settings_factory()) == {}


def test_only_configured_upstreams_get_entries(settings_factory: Any) -> None:
    assert sorted(build_beat_schedule(settings_factory(**WOO))) == [
        "woocommerce-products-full",
        "woocommerce-products-incremental",
    ]
    assert sorted(build_beat_schedule(settings_factory(**ODOO))) == [
        "odoo-suppliers-full",
        "odoo-suppliers-incremental",
    ]


def test_entries_follow_settings(settings_factory: Any) -> None:
    schedule = build_beat_schedule(
        settings_factory(**WOO, **ODOO, sync_incremental_interval_seconds=240, sync_full_cron="30 2 * * 1-5")
    )
    inc = schedule["odoo-suppliers-incremental"]
    assert inc["task"] == "tasks.odoo.sync_suppliers"
    assert inc["schedule"] == 240
    assert inc["kwargs"] == {"full": False}
    assert inc["options"] == {"queue": "odoo", "expires": 240}
    full = schedule["woocommerce-products-full"]
    assert full["task"] == "tasks.woocommerce.sync_products"
    assert full["kwargs"] == {"full": True}
    assert full["options"]["queue"] == "woocommerce"
    assert full["schedule"] == crontab(minute="30", hour="2", day_of_week="1-5")


def test_cron_is_five_fields() -> None:
    cron = parse_cron("0 3 * * *")
    assert cron.hour == {3}
    assert cron.minute == {0}


@pytest.mark.parametrize("expression", ["0 3 * *", "0 3 * * * *", "61 3 * * *", "0 25 * * *", "x y z a b"])
def test_bad_cron_names_the_variable(expression: str) -> None:
    with pytest.raises(ScheduleError, match="SYNC_FULL_CRON"):
        parse_cron(expression)
