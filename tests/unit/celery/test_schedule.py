"""Beat entries: only configured upstreams, intervals and cron from settings, stale ticks expire."""

from __future__ import annotations

from typing import Any

import pytest
from celery.schedules import crontab

from worker.celeryapp.schedule import ScheduleError, build_beat_schedule, parse_cron, source_entries
from worker.sources.catalog import environment_sources
from worker.sources.config import SourceConfig

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


def entries(settings: Any) -> dict[str, dict[str, Any]]:
    """Every configured source's entries, as ``SourceScheduler`` writes them to Redis."""
    schedule: dict[str, dict[str, Any]] = {}
    for source in environment_sources(settings):
        schedule |= source_entries(source, settings)
    return schedule


def test_nothing_configured_nothing_scheduled_but_the_daily_history_prune(settings_factory: Any) -> None:
    static = build_beat_schedule(settings_factory())
    assert list(static) == ["history-prune"]
    assert static["history-prune"]["task"] == "tasks.maintenance.prune_history"
    assert static["history-prune"]["schedule"] == crontab(minute="30", hour="4")
    assert entries(settings_factory()) == {}


def test_only_configured_upstreams_get_entries(settings_factory: Any) -> None:
    assert sorted(entries(settings_factory(**WOO))) == [
        "sync:woocommerce-products:full",
        "sync:woocommerce-products:incremental",
    ]
    assert sorted(entries(settings_factory(**ODOO))) == [
        "sync:odoo-suppliers:full",
        "sync:odoo-suppliers:incremental",
    ]


def test_entries_follow_settings(settings_factory: Any) -> None:
    schedule = entries(
        settings_factory(**WOO, **ODOO, sync_incremental_interval_seconds=240, sync_full_cron="30 2 * * 1-5")
    )
    inc = schedule["sync:odoo-suppliers:incremental"]
    assert inc["task"] == "tasks.sync.sync_source"
    assert inc["schedule"] == 240
    assert inc["kwargs"] == {"source": "odoo-suppliers", "full": False}
    assert inc["options"] == {"queue": "sync-incremental", "expires": 240}
    full = schedule["sync:woocommerce-products:full"]
    assert full["task"] == "tasks.sync.sync_source"
    assert full["kwargs"] == {"source": "woocommerce-products", "full": True}
    assert full["options"]["queue"] == "sync-full"
    assert full["schedule"] == crontab(minute="30", hour="2", day_of_week="1-5")


def test_a_source_overrides_the_fleet_schedule(settings_factory: Any) -> None:
    settings = settings_factory(sync_incremental_interval_seconds=300)
    source = SourceConfig(name="shop-eu", kind="woocommerce", url="https://shop-eu.test",
                          incremental_interval_seconds=60, full_cron="15 4 * * *")  # fmt: skip
    schedule = source_entries(source, settings)
    assert schedule["sync:shop-eu:incremental"]["schedule"] == 60
    assert schedule["sync:shop-eu:full"]["schedule"] == crontab(minute="15", hour="4")
    bad = source.model_copy(update={"full_cron": "61 * * * *"})
    with pytest.raises(ScheduleError, match="full_cron of source 'shop-eu'"):
        source_entries(bad, settings)


def test_cron_is_five_fields() -> None:
    cron = parse_cron("0 3 * * *")
    assert cron.hour == {3}
    assert cron.minute == {0}


@pytest.mark.parametrize("expression", ["0 3 * *", "0 3 * * * *", "61 3 * * *", "0 25 * * *", "x y z a b"])
def test_bad_cron_names_the_variable(expression: str) -> None:
    with pytest.raises(ScheduleError, match="SYNC_FULL_CRON"):
        parse_cron(expression)
