"""Settings -> Celery configuration, in one place.

Every time-related knob derives from ``CELERY_VISIBILITY_TIMEOUT``: Redis redelivers any message not
acked within it, even while its task still runs, so time limits and countdowns must stay below it and
every broker client (worker, beat, the CLI) must use the same value.
"""

from __future__ import annotations

import math
from typing import Any

from kombu.entity import Exchange, Queue

from worker.infra.settings import Settings

# Incremental and full runs never compete for the same slots: each mode has its queue, consumed by a
# worker pool of its own, so a 100k full sync cannot delay any source's incremental runs.
INCREMENTAL_QUEUE = "sync-incremental"
FULL_QUEUE = "sync-full"
QUEUES = (INCREMENTAL_QUEUE, FULL_QUEUE)
SYNC_TASK = "tasks.sync.sync_source"


def queue_for(full: bool) -> str:
    return FULL_QUEUE if full else INCREMENTAL_QUEUE


def route_by_mode(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **_: Any
) -> dict[str, str]:
    """Celery router: a sync goes to its mode's queue (the legacy per-upstream tasks too)."""
    full = bool((kwargs or {}).get("full", False))
    return {"queue": queue_for(full), "routing_key": queue_for(full)}


# kombu scans the unacked set every interval x throttle seconds (100 s by default). After a SIGKILL a
# message comes back only after the visibility timeout plus one sweep, so the sweep scales with it.
DEFAULT_RESTORE_INTERVAL = 10
MAX_RESTORE_SWEEP_SECONDS = 100

# A standby beat takes over after the leader lock expires; with these it was seen doing so in ~19 s.
BEAT_MAX_LOOP_INTERVAL = 5
REDBEAT_LOCK_TIMEOUT = 15


class CeleryConfigError(ValueError):
    """The Celery configuration contradicts itself in a way that loses or duplicates work."""


def restore_sweep(visibility_timeout: int) -> tuple[int, int]:
    """``(unacked_restore_interval, unacked_restore_throttle)`` for a sweep of ~1/4 of the timeout."""
    period = max(1, min(MAX_RESTORE_SWEEP_SECONDS, visibility_timeout // 4))
    interval = min(DEFAULT_RESTORE_INTERVAL, period)
    return interval, max(1, math.ceil(period / interval))


def transport_options(settings: Settings) -> dict[str, Any]:
    interval, throttle = restore_sweep(settings.celery_visibility_timeout)
    return {
        "visibility_timeout": settings.celery_visibility_timeout,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": throttle,
    }


def _queues() -> list[Queue]:
    # One queue per mode (see INCREMENTAL_QUEUE).
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
        for name in QUEUES
    ]


def build_config(settings: Settings) -> dict[str, Any]:
    """The complete Celery configuration for ``settings``."""
    options = transport_options(settings)
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        "result_backend": settings.broker_url,
        "result_backend_transport_options": {"visibility_timeout": options["visibility_timeout"]},
        "result_expires": 24 * 3600,
        "result_extended": True,
        "task_queues": _queues(),
        "task_default_queue": INCREMENTAL_QUEUE,
        "task_routes": (route_by_mode,),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Ack after the task ran and requeue when its process dies, so a crash never loses a sync.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A run that raised or hit the hard limit would do so again; its checkpoint lets the next
        # scheduled run continue, so the message is acked rather than looping.
        "task_acks_on_failure": True,
        "task_acks_on_timeout": True,
        "task_track_started": True,
        "task_soft_time_limit": settings.celery_task_soft_time_limit,
        "task_time_limit": settings.celery_task_time_limit,
        "worker_prefetch_multiplier": 1,
        # With False, a lost broker connection restores the running task's message and it runs twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "worker.celeryapp.scheduler:SourceScheduler",
        "beat_max_loop_interval": BEAT_MAX_LOOP_INTERVAL,
        "redbeat_redis_url": settings.redis_url,
        "redbeat_key_prefix": f"{settings.redis_key_prefix}:redbeat:",
        "redbeat_lock_timeout": REDBEAT_LOCK_TIMEOUT,
    }


def config_problems(conf: Any, settings: Settings) -> list[str]:
    """Ways the live app config disagrees with the settings' time budget."""
    vt = settings.celery_visibility_timeout
    problems = []
    for key in ("broker_transport_options", "result_backend_transport_options"):
        value = (conf.get(key) or {}).get("visibility_timeout")
        if value != vt:
            problems.append(f"{key}: visibility_timeout is {value}, settings say {vt}")
    hard = conf.get("task_time_limit")
    if hard is None or hard >= vt:
        problems.append(f"task_time_limit ({hard}) must be set and below the visibility timeout ({vt})")
    soft = conf.get("task_soft_time_limit")
    if soft is None or hard is None or soft >= hard:
        problems.append(f"task_soft_time_limit ({soft}) must be below task_time_limit ({hard})")
    countdowns = {
        "RETRY_AFTER_CAP_SECONDS": settings.retry_after_cap_seconds,
        "ODOO_BREAKER__OPEN_MAX_SECONDS": settings.odoo_breaker.open_max_seconds,
        "WOOCOMMERCE_BREAKER__OPEN_MAX_SECONDS": settings.woocommerce_breaker.open_max_seconds,
        # A redelivered run that meets its dead predecessor's lock retries after the lock's TTL.
        "SYNC_LOCK_TTL_SECONDS": settings.sync_lock_ttl_seconds + 1,
    }
    problems += [
        f"{name} ({value:g}) must stay below the visibility timeout ({vt})"
        for name, value in countdowns.items()
        if value >= vt
    ]
    if conf.get("worker_prefetch_multiplier") != 1:
        problems.append("worker_prefetch_multiplier must be 1")
    if not (conf.get("task_acks_late") and conf.get("task_reject_on_worker_lost")):
        problems.append("task_acks_late and task_reject_on_worker_lost must both be on")
    return problems


def check_config(conf: Any, settings: Settings) -> None:
    """Fail start-up when the config would redeliver running tasks or lose crashed ones."""
    problems = config_problems(conf, settings)
    if problems:
        msg = "inconsistent Celery configuration:\n  " + "\n  ".join(problems)
        raise CeleryConfigError(msg)
