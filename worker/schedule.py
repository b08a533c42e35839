"""Beat entries: an incremental run per configured upstream every few minutes, and a nightly full run."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from worker.celery_config import ODOO_QUEUE, WOOCOMMERCE_QUEUE
from worker.settings import Settings

ODOO_TASK = "tasks.odoo.sync_suppliers"
WOOCOMMERCE_TASK = "tasks.woocommerce.sync_products"
# A full run may take long; its message expires when the next nightly tick would be due anyway.
FULL_RUN_EXPIRES_SECONDS = 12 * 3600


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
