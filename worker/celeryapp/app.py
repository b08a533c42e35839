"""The Celery app: ``celery -A worker worker|beat|flower``.

Created and configured in one place from one ``Settings`` object; the tasks live in ``tasks/``.
"""

from __future__ import annotations

import redis
from celery import Celery

from worker.celeryapp.config import build_config, check_config
from worker.celeryapp.followups import connect_followup_sweeper
from worker.celeryapp.schedule import build_beat_schedule
from worker.celeryapp.shutdown import connect_shutdown_signals
from worker.infra.logs import connect_celery_signals
from worker.infra.metrics import install_celery_metrics_hooks
from worker.infra.settings import Settings, get_settings

TASK_MODULES = ("tasks.sync", "tasks.maintenance", "tasks.odoo", "tasks.woocommerce")


def create_app(settings: Settings) -> Celery:
    """A configured app; fails at once when the config would lose or duplicate work."""
    app = Celery("syncworker", include=list(TASK_MODULES))
    app.config_from_object(build_config(settings))
    app.conf.beat_schedule = build_beat_schedule(settings)
    check_config(app.conf, settings)
    return app


def close_app(app: Celery) -> None:
    """Release the app's connections: ``Celery.close`` leaves the result backend's Redis pool open."""
    backend = app.backend
    consumer = getattr(backend, "result_consumer", None)
    if consumer is not None and hasattr(consumer, "stop"):
        consumer.stop()
    client = getattr(backend, "client", None)
    if isinstance(client, redis.Redis):
        client.connection_pool.disconnect()
    app.close()


def _redis() -> redis.Redis:
    from worker.celeryapp.deps import get_redis

    return get_redis()


def _wire_process(settings: Settings) -> None:
    # deps is imported lazily: it pulls in the engine, clients and sync code, which neither beat nor
    # the CLI needs just to load the app.
    def redis_client() -> redis.Redis:
        from worker.celeryapp.deps import get_redis

        return get_redis()

    connect_celery_signals(settings)
    connect_shutdown_signals(settings, redis_client)
    install_celery_metrics_hooks(settings)


app = create_app(get_settings())
_wire_process(get_settings())


def _source_names() -> list[str]:
    from worker.celeryapp.deps import get_session_factory
    from worker.sources.catalog import all_sources

    # Enabled ones only: a disabled source's follow-up waits until it is enabled again.
    sources = all_sources(get_settings(), get_session_factory(), credentials=False)
    return [s.name for s in sources if s.enabled]


connect_followup_sweeper(get_settings(), _redis, app, _source_names)
