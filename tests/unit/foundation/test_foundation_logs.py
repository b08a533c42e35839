"""JSON and console logging: fields, bound context, redaction, and task context through Celery signals."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from celery import Celery, signals

from worker.infra.logs import (
    SyncworkerHandler,
    bind_context,
    clear_context,
    configure_logging,
    connect_celery_signals,
    current_context,
    disconnect_celery_signals,
    log_context,
)
from worker.infra.settings import Settings

CANARY = "cs_canary_5e1d9c0b7a"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    clear_context()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    clear_context()
    disconnect_celery_signals()


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(
        service_name="syncworker-test",
        woocommerce_url="https://shop.test",
        woocommerce_consumer_key="ck_plain_key_123",
        woocommerce_consumer_secret=CANARY,
    )


def capture(settings: Settings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_json_with_the_standard_fields(settings: Settings) -> None:
    stream = capture(settings)
    logging.getLogger("worker.sync").info("page %d stored", 3, extra={"upstream": "woocommerce"})
    (line,) = lines(stream)
    assert line["message"] == "page 3 stored"
    assert line["level"] == "INFO"
    assert line["logger"] == "worker.sync"
    assert line["service"] == "syncworker-test"
    assert line["upstream"] == "woocommerce"
    when = datetime.fromisoformat(line["time"])
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_level_comes_from_settings(settings_factory: Callable[..., Settings]) -> None:
    stream = capture(settings_factory(log_level="WARNING"))
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    assert [line["message"] for line in lines(stream)] == ["shown"]


def test_configuring_twice_replaces_the_handler(settings: Settings) -> None:
    capture(settings)
    stream = capture(settings)
    logging.getLogger("x").warning("once")
    assert len([h for h in logging.getLogger().handlers if isinstance(h, SyncworkerHandler)]) == 1
    assert len(lines(stream)) == 1


def test_bound_context_is_merged_and_can_be_cleared(settings: Settings) -> None:
    stream = capture(settings)
    log = logging.getLogger("worker.sync")
    bind_context(correlation_id="run-7", source="odoo-suppliers")
    log.info("with context")
    with log_context(page=2):
        log.info("inside block")
    log.info("after block")
    clear_context("source")
    log.info("source cleared")
    clear_context()
    log.info("bare")
    out = lines(stream)
    assert out[0]["correlation_id"] == "run-7"
    assert out[1]["page"] == 2
    assert "page" not in out[2]
    assert out[3]["correlation_id"] == "run-7" and "source" not in out[3]
    assert "correlation_id" not in out[4]


def test_explicit_extras_win_over_context(settings: Settings) -> None:
    stream = capture(settings)
    with log_context(page=1):
        logging.getLogger("x").info("m", extra={"page": 9})
    assert lines(stream)[0]["page"] == 9


def test_secrets_are_scrubbed_from_messages_extras_and_tracebacks(settings: Settings) -> None:
    stream = capture(settings)
    log = logging.getLogger("worker.upstream")
    log.warning("calling %s", f"https://shop.test/x?consumer_secret={CANARY}")
    log.warning("plain %s", CANARY, extra={"request": {"headers": {"Authorization": "Basic abc123=="}}})
    with log_context(url=f"https://shop.test/?k={CANARY}"):
        try:
            raise RuntimeError(f"upstream refused {CANARY}")
        except RuntimeError:
            log.exception("failed")
    output = stream.getvalue()
    assert CANARY not in output
    assert "abc123==" not in output
    out = lines(stream)
    assert out[1]["request"]["headers"]["Authorization"] == "***"
    assert "RuntimeError: upstream refused ***" in out[2]["exc_info"]


def test_console_format_is_for_humans_and_still_redacted(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        log_format="console",
        woocommerce_url="https://shop.test",
        woocommerce_consumer_key="ck_plain_key_123",
        woocommerce_consumer_secret=CANARY,
    )
    stream = capture(settings)
    with log_context(task_id="abc"):
        logging.getLogger("worker.sync").info("hello %s", CANARY)
    text = stream.getvalue()
    assert "INFO" in text and "worker.sync: hello ***" in text and "task_id=abc" in text
    assert CANARY not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def make_app() -> Celery:
    # Eager mode only to see the task_prerun/task_postrun signals bind and drop the context.
    app = Celery("logs-test", set_as_current=False)
    app.conf.task_always_eager = True
    return app


def test_task_lines_carry_task_id_name_and_correlation_id(settings: Settings) -> None:
    stream = capture(settings)
    connect_celery_signals(settings)
    app = make_app()

    @app.task(name="tests.sync_something")
    def sync_something() -> str:
        bind_context(correlation_id="corr-42")  # as the sync engine does at the start of a run
        logging.getLogger("worker.sync").info("inside the task")
        return "done"

    result = sync_something.apply()
    assert result.get() == "done"
    logging.getLogger("worker.sync").info("after the task")

    inside, after = [line for line in lines(stream) if line["logger"] == "worker.sync"]
    assert inside["task_id"] == result.id
    assert inside["task_name"] == "tests.sync_something"
    assert inside["correlation_id"] == "corr-42"
    assert "task_id" not in after and "correlation_id" not in after
    assert current_context() == {}


def test_context_bound_before_a_task_survives_it(settings: Settings) -> None:
    capture(settings)
    connect_celery_signals(settings)
    app = make_app()

    @app.task(name="tests.noop")
    def noop() -> None:
        bind_context(correlation_id="inner")

    bind_context(worker="w1")
    noop.apply()
    assert current_context() == {"worker": "w1"}


def test_setup_logging_signal_configures_logging(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    connect_celery_signals(settings)
    signals.setup_logging.send(sender=None, loglevel=logging.DEBUG, logfile=None, format="", colorize=False)
    assert any(isinstance(h, SyncworkerHandler) for h in logging.getLogger().handlers)
    logging.getLogger("celery.worker").warning("through celery's hook")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "through celery's hook"
    assert line["service"] == "syncworker-test"
