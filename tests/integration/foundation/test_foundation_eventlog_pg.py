"""EventLog on the real PostgreSQL and Redis: own transaction, outages on closed ports, no secret kept."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from models import EventLog as Row
from models import Supplier
from worker.infra.db import make_engine
from worker.infra.eventlog import EventLog
from worker.infra.logs import bind_context, clear_context, configure_logging
from worker.infra.settings import Settings

pytestmark = pytest.mark.integration

CANARY = "cs_canary_integration_8c7b6a5f"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but never listening: every connection is refused, immediately."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], migrated_pg_url: str, redis_url: str) -> Settings:
    return settings_factory(
        database_url=migrated_pg_url,
        redis_url=redis_url,
        woocommerce_url="https://shop.test",
        woocommerce_consumer_key="ck_integration_key_1",
        woocommerce_consumer_secret=CANARY,
    )


@pytest.fixture
def dead_pg(closed_port: int) -> Iterator[Engine]:
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{closed_port}/nothing", connect_timeout=2)
    yield engine
    engine.dispose()


@pytest.fixture
def spool_redis(redis_client: redis.Redis, settings: Settings) -> Iterator[redis.Redis]:
    yield redis_client
    for key in redis_client.scan_iter(f"{settings.redis_key_prefix}:*"):
        redis_client.delete(key)


@pytest.fixture
def dead_redis(closed_port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=closed_port, socket_connect_timeout=0.5, socket_timeout=0.5)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def stored(engine: Engine) -> list[tuple[str, datetime]]:
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(select(Row.event_type, Row.occurred_at).order_by(Row.id))]


def test_an_event_outlives_the_rolled_back_transaction_it_describes(
    clean_pg: Engine, spool_redis: redis.Redis, settings: Settings
) -> None:
    log = EventLog(clean_pg, spool_redis, settings)
    with Session(clean_pg) as session, session.begin():
        session.add(
            Supplier(
                source="odoo-suppliers",
                odoo_id=7,
                name="Acme",
                raw={},
                content_hash="h",
                first_synced_at=T0,
                last_synced_at=T0,
            )
        )
        session.flush()
        log.record("odoo:supplier:upsert_failed", aggregate_id="supplier:7", payload={"error": "boom"})
        session.rollback()
    with clean_pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM suppliers")).scalar_one() == 0
        row = conn.execute(text("SELECT event_type, aggregate_id, payload FROM event_log")).one()
    assert tuple(row) == ("odoo:supplier:upsert_failed", "supplier:7", {"error": "boom"})


def test_events_recorded_while_postgres_is_down_are_flushed_in_order(
    clean_pg: Engine, dead_pg: Engine, spool_redis: redis.Redis, settings: Settings
) -> None:
    clock = Clock()
    down = EventLog(dead_pg, spool_redis, settings, clock=clock)
    for n in range(5):
        down.record(f"event.{n}", payload={"n": n})
    assert stored(clean_pg) == []
    assert spool_redis.llen(f"{settings.redis_key_prefix}:events:pending") == 5

    # The database is back: the next event written flushes the backlog first.
    EventLog(clean_pg, spool_redis, settings, clock=clock).record("event.5")
    assert stored(clean_pg) == [(f"event.{n}", T0 + timedelta(seconds=n + 1)) for n in range(6)]
    assert spool_redis.llen(f"{settings.redis_key_prefix}:events:pending") == 0


def test_with_redis_down_too_events_go_to_the_file_and_come_back_in_order(
    clean_pg: Engine, dead_pg: Engine, dead_redis: redis.Redis, spool_redis: redis.Redis, settings: Settings
) -> None:
    clock = Clock()
    both_down = EventLog(dead_pg, dead_redis, settings, clock=clock)
    both_down.record("event.0")
    both_down.record("event.1")
    spool = Path(settings.event_spool_path)
    assert len(spool.read_text().splitlines()) == 2

    db_down = EventLog(dead_pg, spool_redis, settings, clock=clock)  # Redis is back, PostgreSQL is not
    db_down.record("event.2")

    flusher = EventLog(clean_pg, spool_redis, settings, clock=clock)
    assert flusher.flush_pending() == 3
    assert [t for t, _ in stored(clean_pg)] == ["event.0", "event.1", "event.2"]
    assert not spool.exists()


def test_a_canary_secret_reaches_neither_the_table_nor_the_logs(
    clean_pg: Engine, dead_pg: Engine, spool_redis: redis.Redis, settings: Settings
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    configure_logging(settings, stream=stream)
    try:
        bind_context(correlation_id="run-canary")
        payload: dict[str, Any] = {
            "request": {"url": f"https://shop.test/wp-json/wc/v3/products?consumer_secret={CANARY}"},
            "response": f'{{"message": "invalid signature for {CANARY}"}}',
            "stack": f"Traceback ...\nAuthError: {CANARY}",
        }
        EventLog(clean_pg, spool_redis, settings).record("woocommerce:auth_failed", payload=payload)
        EventLog(dead_pg, spool_redis, settings).record("woocommerce:auth_failed", payload=payload)
        assert EventLog(clean_pg, spool_redis, settings).flush_pending() == 1
        logging.getLogger("worker.upstream").error("refused: %s", payload, extra={"secret_echo": CANARY})
    finally:
        clear_context()
        for handler in root.handlers:
            if handler not in before:
                root.removeHandler(handler)

    with clean_pg.connect() as conn:
        dumped = [
            json.dumps(list(r), default=str) for r in conn.execute(text("SELECT * FROM event_log")).all()
        ]
    assert len(dumped) == 2
    assert all(CANARY not in d for d in dumped)
    assert all("consumer_secret=***" in d for d in dumped)
    output = stream.getvalue()
    assert "refused" in output and "run-canary" in output
    assert CANARY not in output


def test_from_settings_talks_to_the_real_services(
    clean_pg: Engine, spool_redis: redis.Redis, settings: Settings
) -> None:
    log = EventLog.from_settings(settings)
    try:
        log.record("built.from.settings", correlation_id="c-1")
    finally:
        log.close()
    assert [t for t, _ in stored(clean_pg)] == ["built.from.settings"]
