"""Beat entries: per source, an incremental run every few minutes and a nightly full run."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise
from typing import Any

from celery.schedules import crontab

from worker.celeryapp.config import SYNC_TASK, queue_for
from worker.infra.settings import Settings
from worker.sources.config import SourceConfig

# A full run may take long; its message expires when the next nightly tick would be due anyway.
FULL_RUN_EXPIRES_SECONDS = 12 * 3600
# Four years and a week hold a leap day and every weekday of every month: the longest gap shows in them.
GAP_SEARCH_DAYS = 4 * 366 + 7


class ScheduleError(ValueError):
    """SYNC_FULL_CRON cannot be parsed."""


def parse_cron(expression: str, variable: str | None = None) -> crontab:
    """A five-field cron expression (minute hour day-of-month month day-of-week), in UTC.

    ``variable`` names where the expression came from in errors (SYNC_FULL_CRON by default).
    """
    where = variable or "SYNC_FULL_CRON"
    fields = expression.split()
    if len(fields) != 5:
        msg = f"{where}: expected 5 fields, got {len(fields)} in {expression!r}"
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
        msg = f"{where}: {expression!r} is not a valid cron expression ({exc})"
        raise ScheduleError(msg) from None


def source_entries(source: SourceConfig, settings: Settings) -> dict[str, dict[str, Any]]:
    """A source's two beat entries: incremental every interval, full on its cron (the fleet's defaults
    where the source sets none). The message carries the source's name only."""
    period = source.incremental_interval_seconds or settings.sync_incremental_interval_seconds
    cron = source.full_cron or settings.sync_full_cron
    name = source.name
    return {
        f"sync:{name}:incremental": {
            "task": SYNC_TASK,
            "schedule": period,
            "kwargs": {"source": name, "full": False},
            # Ticks that piled up while no worker ran are dropped instead of running back to back.
            "options": {"queue": queue_for(False), "expires": period},
        },
        f"sync:{name}:full": {
            "task": SYNC_TASK,
            "schedule": parse_cron(
                cron, variable=f"full_cron of source {name!r}" if source.full_cron else None
            ),
            "kwargs": {"source": name, "full": True},
            "options": {"queue": queue_for(True), "expires": FULL_RUN_EXPIRES_SECONDS},
        },
    }


PRUNE_TASK = "tasks.maintenance.prune_history"


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The static entries: the daily history prune. The sources' entries are not here: ``SourceScheduler``
    keeps them in Redis, following the ``sources`` table (and the environment's sources) without a restart."""
    return {
        "history-prune": {
            "task": PRUNE_TASK,
            # Daily, away from the default nightly full runs; a prune missed while beat was down is not
            # worth running twice.
            "schedule": crontab(minute=30, hour=4),
            "options": {"queue": queue_for(False), "expires": FULL_RUN_EXPIRES_SECONDS},
        }
    }


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


def sync_intervals(settings: Settings, sources: list[SourceConfig]) -> dict[tuple[str, str], float]:
    """(source, mode) -> the longest time beat leaves between two runs, for every enabled source."""
    intervals: dict[tuple[str, str], float] = {}
    for source in sources:
        if not source.enabled:
            continue
        for entry in source_entries(source, settings).values():
            every = entry["schedule"]
            seconds = longest_gap_seconds(every) if isinstance(every, crontab) else float(every)
            if seconds is not None:
                intervals[(source.name, "full" if entry["kwargs"]["full"] else "incremental")] = seconds
    return intervals
