"""JSON (or console) logging with bound context, wired into Celery.

Context (``task_id``, ``task_name``, the run's ``correlation_id``) lives in a ``contextvars`` mapping and
is merged into every record by a handler filter, so call sites log plain messages. A second filter
scrubs secrets out of the message, the extras and tracebacks: a secret that slips into a log call is
still masked before it is written.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from worker.infra.redaction import Redactor, jsonable
from worker.infra.settings import Settings

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("syncworker_log_context", default=_EMPTY)
# Attributes every LogRecord has; anything else on a record is an extra or bound context.
_STANDARD_ATTRS = frozenset(RESERVED_ATTRS) | {"message", "asctime", "taskName"}
TRACEBACK_LIMIT = 8000
TASK_KEYS = ("task_id", "task_name", "correlation_id")


def bind_context(**values: Any) -> None:
    """Add ``values`` to every later log line of this thread / task."""
    _context.set(MappingProxyType({**_context.get(), **values}))


def clear_context(*keys: str) -> None:
    """Forget the given keys, or everything when none are given."""
    if not keys:
        _context.set(_EMPTY)
        return
    _context.set(MappingProxyType({k: v for k, v in _context.get().items() if k not in keys}))


def current_context() -> dict[str, Any]:
    return dict(_context.get())


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind ``values`` for the ``with`` block only; the previous context comes back afterwards."""
    token = _context.set(MappingProxyType({**_context.get(), **values}))
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Adds the service name and the bound context to each record (explicit extras win)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingFilter(logging.Filter):
    """Renders the message and scrubs it and every extra; the formatter scrubs tracebacks."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = self.redactor.scrub_text(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, self.redactor.scrub({key: jsonable(value)})[key])
        return True


def _iso_time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, service, context and extras."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(json_ensure_ascii=False)
        self.redactor = redactor

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message: dict[str, Any]
    ) -> None:
        log_data.update(
            time=_iso_time(record), level=record.levelname, logger=record.name, message=record.getMessage()
        )
        super().add_fields(log_data, record, message)

    def formatException(self, ei: Any) -> str:
        return self._scrub(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._scrub(super().formatStack(stack_info))

    def _scrub(self, text: str | list[str]) -> str:
        joined = "\n".join(text) if isinstance(text, list) else text
        return self.redactor.scrub_text(joined, TRACEBACK_LIMIT)


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for people reading a terminal."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.redactor = redactor

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_time(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items() if k != "service")
        if not extras:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {extras}{newline}{rest}"

    def formatException(self, ei: Any) -> str:
        return self.redactor.scrub_text(super().formatException(ei), TRACEBACK_LIMIT)


class SyncworkerHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure_logging`` installed, so calling it again replaces it."""


def configure_logging(settings: Settings, *, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record through context, redaction and the chosen format to ``stream`` (stderr)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, SyncworkerHandler):
            root.removeHandler(handler)
            handler.close()
    redactor = Redactor.from_settings(settings)
    handler = SyncworkerHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter(settings.service_name))
    handler.addFilter(RedactingFilter(redactor))
    formatter = JsonLogFormatter(redactor) if settings.log_format == "json" else ConsoleFormatter(redactor)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler


# -- Celery ----------------------------------------------------------------------------------------

_task_tokens: dict[str, Token[Mapping[str, Any]]] = {}
_UIDS = ("syncworker.logs.setup", "syncworker.logs.prerun", "syncworker.logs.postrun")


def _on_task_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    token = _context.set(MappingProxyType({**_context.get(), "task_id": task_id, "task_name": task.name}))
    _task_tokens[str(task_id)] = token


def _on_task_postrun(task_id: str | None = None, **_: Any) -> None:
    # Restore the context from before the task, dropping whatever the task bound (its correlation id).
    token = _task_tokens.pop(str(task_id), None)
    try:
        if token is None:
            raise ValueError("no token")
        _context.reset(token)
    except ValueError:
        clear_context(*TASK_KEYS)


def connect_celery_signals(settings: Settings | None = None) -> None:
    """Let Celery log through ``configure_logging`` and bind task context around every task.

    ``settings`` defaults to the process-wide settings, read when Celery sets up logging.
    """
    from celery import signals

    def on_setup_logging(**_: Any) -> None:
        from worker.infra.settings import get_settings

        configure_logging(settings if settings is not None else get_settings())

    # Celery keeps the first receiver of a dispatch_uid; replace it so the latest settings win.
    disconnect_celery_signals()
    signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid=_UIDS[0])
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid=_UIDS[1])
    signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid=_UIDS[2])


def disconnect_celery_signals() -> None:
    from celery import signals

    for signal, uid in zip(
        (signals.setup_logging, signals.task_prerun, signals.task_postrun), _UIDS, strict=True
    ):
        signal.disconnect(dispatch_uid=uid)
