"""Beat entries: an incremental run per configured upstream every few minutes, and a nightly full run."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise
from typing import Any

from celery.schedules import crontab

from worker.celeryapp.config import ODOO_QUEUE, WOOCOMMERCE_QUEUE
from worker.infra.settings import Settings

ODOO_TASK = "tasks.odoo.sync_suppliers"
WOOCOMMERCE_TASK = "tasks.woocommerce.sync_products"
# A full run may take long; its message expires when the next nightly tick would be due anyway.
FULL_RUN_EXPIRES_SECONDS = 12 * 3600
# Four years and a week hold a leap day and every weekday of every month: the longest gap shows in them.
GAP_SEARCH_DAYS = 4 * 366 + 7


class ScheduleError(ValueError):
    """SYNC_FULL_CRON cannot be parsed."""


def parse_cron(expression: str) -> crontab:
    """A five-field cron expression (minute hour day-of-month month day-of-week), in UTC."""
    fields = expression.split()
    if len(fields) != 5:
        msg = f"SYNC_FULL_CRON: expected 5 fields, got {len(fields)} in {expression!r}"
        raise ScheduleError(msg)
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ValueError as exc:
        msg = f"SYNC_FULL_CRON: {expression!r} is not a valid cron expression ({exc})"
        raise ScheduleError(msg) from None


def _entries(key: str, task: str, queue: str, settings: Settings) -> dict[str, dict[str, Any]]:
    period = settings.sync_incremental_interval_seconds
    return {
        f"{key}-incremental": {
            "task": task,
            "schedule": period,
            "kwargs": {"full": False},
            # Ticks that piled up while no worker ran are dropped instead of running back to back.
            "options": {"queue": queue, "expires": period},
        },
        f"{key}-full": {
            "task": task,
            "schedule": parse_cron(settings.sync_full_cron),
            "kwargs": {"full": True},
            "options": {"queue": queue, "expires": FULL_RUN_EXPIRES_SECONDS},
        },
    }


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Entries only for the upstreams that are configured."""
    schedule: dict[str, dict[str, Any]] = {}
    if settings.odoo_enabled:
        schedule |= _entries("odoo-suppliers", ODOO_TASK, ODOO_QUEUE, settings)
    if settings.woocommerce_enabled:
        schedule |= _entries("woocommerce-products", WOOCOMMERCE_TASK, WOOCOMMERCE_QUEUE, settings)
    return schedule


def _fires_on(schedule: crontab, day: date) -> bool:
    # Celery fires on a day only when its month, day of month and weekday (0 = Sunday) all match.
    return (
        day.month in schedule.month_of_year
        and day.day in schedule.day_of_month
        and day.isoweekday() % 7 in schedule.day_of_week
    )


def longest_gap_seconds(schedule: crontab) -> float | None:
    """The longest wait between two consecutive firings of a cron schedule (UTC), or None when rarer."""
    minutes = sorted(h * 60 + m for h in schedule.hour for m in schedule.minute)
    start = date(2024, 1, 1)
    days = [n for n in range(GAP_SEARCH_DAYS) if _fires_on(schedule, start + timedelta(days=n))]
    if len(days) < 2:
        return None  # too rare to measure (a leap day): no interval to alert on
    within_day = max((b - a for a, b in pairwise(minutes)), default=0)
    across_days = max((b - a) * 1440 + minutes[0] - minutes[-1] for a, b in pairwise(days))
    return float(max(within_day, across_days) * 60)


def sync_intervals(settings: Settings) -> dict[tuple[str, str], float]:
    """(source, mode) -> the longest time beat leaves between two runs, for every scheduled entry."""
    intervals: dict[tuple[str, str], float] = {}
    for name, entry in build_beat_schedule(settings).items():
        source, mode = name.rsplit("-", 1)
        every = entry["schedule"]
        seconds = longest_gap_seconds(every) if isinstance(every, crontab) else float(every)
        if seconds is not None:
            intervals[(source, mode)] = seconds
    return intervals
