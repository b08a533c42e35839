"""syncworker: mirrors Odoo suppliers and WooCommerce products into SQL.

``celery -A worker`` finds the app as ``worker.app``. It is built on first access only, so importing
``worker.infra.settings`` or any other submodule never reads the environment or builds the Celery app.
That first access is where a Celery process (worker, beat or Flower) starts: it refuses, naming each
variable, when the settings are invalid or the event spool (EVENT_SPOOL_PATH) cannot be written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.infra.eventspool import check_spool_writable
        from worker.infra.settings import SettingsError, get_settings

        try:
            from worker.celeryapp.app import app

            check_spool_writable(get_settings().event_spool_path)
        except SettingsError as exc:
            # `celery -A worker ...` would bury the list of problems under its own traceback.
            import sys

            print(f"syncworker: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return app
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
