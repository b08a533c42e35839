"""EventLog on SQLite and fakeredis: redaction, truncation, spooling, ordered and idempotent flushes."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from sqlalchemy import Engine, event, insert, select
from sqlalchemy.orm import Session

import worker.infra.eventlog as eventlog_module
import worker.infra.eventspool as eventspool_module
from models import Base, Supplier
from models import EventLog as Row
from worker.infra.db import make_engine
from worker.infra.eventlog import EventLog
from worker.infra.eventspool import RedisSpool
from worker.infra.settings import Settings

CANARY_KEY = "ck_canary_7f3a9b2c4d"
CANARY_SECRET = "cs_canary_e8d1f0a6b5"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class Clock:
    """Wall clock and monotonic clock under the test's control."""

    def __init__(self) -> None:
        self.now = T0
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(
        woocommerce_url="https://shop.test",
        woocommerce_consumer_key=CANARY_KEY,
        woocommerce_consumer_secret=CANARY_SECRET,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'events.db'}")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def dead_engine(tmp_path: Path) -> Iterator[Engine]:
    # A database file in a directory that does not exist: every connect fails, for real.
    eng = make_engine(f"sqlite:///{tmp_path / 'missing' / 'events.db'}")
    yield eng
    eng.dispose()


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_log(engine: Engine, client: redis.Redis | None, settings: Settings, clock: Clock) -> EventLog:
    return EventLog(engine, client, settings, clock=clock, monotonic=clock.monotonic)


def stored(engine: Engine) -> list[tuple[str, datetime, dict[str, Any], dict[str, Any]]]:
    with engine.connect() as conn:
        result = conn.execute(
            select(Row.event_type, Row.occurred_at, Row.payload, Row.event_metadata).order_by(Row.id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in result]


def pending_key(settings: Settings) -> str:
    return f"{settings.redis_key_prefix}:events:pending"


def test_record_writes_one_row_with_its_fields(
    engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    log = make_log(engine, fake_redis, settings, clock)
    log.record(
        "woocommerce:product:parse_failed",
        aggregate_id="product:42",
        correlation_id="run-1",
        payload={"field": "price"},
        metadata={"attempt": 2},
    )
    with Session(engine) as session:
        row = session.scalars(select(Row)).one()
    assert row.event_type == "woocommerce:product:parse_failed"
    assert row.aggregate_id == "product:42"
    assert row.correlation_id == "run-1"
    assert row.occurred_at == T0
    assert row.payload == {"field": "price"}
    assert row.event_metadata["attempt"] == 2
    assert len(row.event_metadata["event_uuid"]) == 32


def test_secrets_and_credentials_are_redacted(
    engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    log = make_log(engine, fake_redis, settings, clock)
    log.record(
        "upstream.failed",
        payload={
            "request": {
                "url": f"https://shop.test/wp-json/wc/v3/products?consumer_key={CANARY_KEY}&page=2",
                "headers": {"Authorization": "Basic Y2tfY2FuYXJ5OmNzX2NhbmFyeQ==", "Accept": "json"},
                "params": {"consumer_secret": "anything-at-all", "api_key": "k-123456", "page": 2},
            },
            "message": f"auth failed for {CANARY_SECRET}",
            "nested": [{"deep": [f"x{CANARY_KEY}y"]}],
        },
        metadata={"password": "hunter22", "note": f"token={CANARY_SECRET}"},
    )
    (_, _, payload, metadata) = stored(engine)[0]
    text = json.dumps([payload, metadata])
    leaked = [
        CANARY_KEY,
        CANARY_SECRET,
        "Y2tfY2FuYXJ5OmNzX2NhbmFyeQ==",
        "anything-at-all",
        "k-123456",
        "hunter22",
    ]
    for secret in leaked:
        assert secret not in text
    assert payload["request"]["headers"] == {"Authorization": "***", "Accept": "json"}
    assert payload["request"]["params"]["page"] == 2
    assert payload["request"]["url"].endswith("consumer_key=***&page=2")
    assert metadata["password"] == "***"


def test_bodies_are_truncated_and_values_made_json_safe(
    engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    log = make_log(engine, fake_redis, settings, clock)
    log.record(
        "upstream.failed",
        payload={
            "request": {"body": "q" * 5000},
            "response": "r" * 5000,
            "stack": "s" * 20000,
            "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "price": Decimal("12.50"),
            "error": ValueError("bad price"),
            "raw": b"\xffbytes",
            "nul": "a\x00b",
            "nan": float("nan"),
        },
    )
    (_, _, payload, _) = stored(engine)[0]
    assert len(payload["request"]["body"]) == 1000
    assert len(payload["response"]) == 1000
    assert payload["response"].startswith("r" * 900)
    assert "truncated" in payload["response"]
    assert len(payload["stack"]) == 8000
    assert payload["when"] == "2026-01-02T03:04:05+00:00"
    assert payload["price"] == "12.50"
    assert payload["error"] == "ValueError: bad price"
    assert payload["raw"] == "\ufffdbytes"
    assert payload["nul"] == "a\\u0000b"
    assert payload["nan"] == "nan"


def test_database_down_spools_to_redis_then_flushes_in_order(
    engine: Engine, dead_engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    down = make_log(dead_engine, fake_redis, settings, clock)
    for n in range(3):
        down.record(f"event.{n}", payload={"n": n})
        clock.tick()
    assert fake_redis.llen(pending_key(settings)) == 3
    assert not Path(settings.event_spool_path).exists()

    up = make_log(engine, fake_redis, settings, clock)
    assert up.flush_pending() == 3
    assert [(t, at) for t, at, _, _ in stored(engine)] == [
        ("event.0", T0),
        ("event.1", T0 + timedelta(seconds=1)),
        ("event.2", T0 + timedelta(seconds=2)),
    ]
    assert fake_redis.llen(pending_key(settings)) == 0
    assert up.flush_pending() == 0


def test_record_flushes_older_spooled_events_first(
    engine: Engine, dead_engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    make_log(dead_engine, fake_redis, settings, clock).record("old")
    clock.tick()
    make_log(engine, fake_redis, settings, clock).record("new")
    assert [t for t, *_ in stored(engine)] == ["old", "new"]
    assert fake_redis.llen(pending_key(settings)) == 0


def test_redis_down_too_spools_to_file_then_flushes(
    engine: Engine, dead_engine: Engine, server: fakeredis.FakeServer, settings: Settings, clock: Clock
) -> None:
    server.connected = False
    down = make_log(dead_engine, fakeredis.FakeRedis(server=server), settings, clock)
    for n in range(3):
        down.record(f"event.{n}")
        clock.tick()
    spool = Path(settings.event_spool_path)
    # The third event found the database worth another try: it flushed nothing and spooled again.
    assert len(spool.read_text().splitlines()) == 3
    assert CANARY_KEY not in spool.read_text()

    server.connected = True
    up = make_log(engine, fakeredis.FakeRedis(server=server), settings, clock)
    assert up.flush_pending() == 3
    assert [t for t, *_ in stored(engine)] == ["event.0", "event.1", "event.2"]
    assert not spool.exists()


def test_flush_interleaves_redis_and_file_spools_by_time(
    engine: Engine,
    dead_engine: Engine,
    server: fakeredis.FakeServer,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small batches, so the merge has to carry file events across several Redis batches.
    monkeypatch.setattr(eventlog_module, "FLUSH_BATCH", 2)
    client = fakeredis.FakeRedis(server=server)
    expected = []
    for n in range(9):
        server.connected = n % 3 != 1  # every third event finds Redis down and goes to the file
        log = make_log(dead_engine, client, settings, clock)
        log.record(f"event.{n}")
        expected.append(f"event.{n}")
        clock.tick()
    server.connected = True
    assert client.llen(pending_key(settings)) == 6
    assert len(Path(settings.event_spool_path).read_text().splitlines()) == 3

    assert make_log(engine, client, settings, clock).flush_pending() == 9
    assert [t for t, *_ in stored(engine)] == expected


def test_a_flush_that_dies_after_commit_does_not_duplicate(
    engine: Engine,
    dead_engine: Engine,
    fake_redis: Any,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = make_log(dead_engine, fake_redis, settings, clock)
    for n in range(3):
        down.record(f"event.{n}")
        clock.tick()

    real_trim = RedisSpool.trim

    def crash(self: RedisSpool, token: str, count: int) -> bool:
        raise redis.ConnectionError("connection lost between commit and trim")

    monkeypatch.setattr(RedisSpool, "trim", crash)
    up = make_log(engine, fake_redis, settings, clock)
    up.flush_pending()  # rows committed, spool untouched
    assert len(stored(engine)) == 3
    assert fake_redis.llen(pending_key(settings)) == 3

    monkeypatch.setattr(RedisSpool, "trim", real_trim)
    assert up.flush_pending() == 0
    assert [t for t, *_ in stored(engine)] == ["event.0", "event.1", "event.2"]
    assert fake_redis.llen(pending_key(settings)) == 0


def test_a_file_flush_that_dies_after_commit_is_finished_without_duplicates(
    engine: Engine, dead_engine: Engine, settings: Settings, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = make_log(dead_engine, None, settings, clock)
    for n in range(2):
        down.record(f"event.{n}")
        clock.tick()
    spool = Path(settings.event_spool_path)

    monkeypatch.setattr(eventspool_module.FileClaim, "done", lambda self: None)  # "crash" before the unlink
    up = make_log(engine, None, settings, clock)
    assert up.flush_pending() == 2
    assert spool.exists()
    down.record("event.2")  # appended behind the events already written
    monkeypatch.undo()

    assert up.flush_pending() == 1
    assert [t for t, *_ in stored(engine)] == ["event.0", "event.1", "event.2"]
    assert not spool.exists()


def test_an_event_in_both_spools_is_written_once(
    engine: Engine, dead_engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    # A push that timed out after Redis had stored it falls through to the file as well.
    make_log(dead_engine, fake_redis, settings, clock).record("twice")
    line = fake_redis.lindex(pending_key(settings), 0).decode()
    Path(settings.event_spool_path).write_text(line + "\n")
    assert make_log(engine, fake_redis, settings, clock).flush_pending() == 1
    assert [t for t, *_ in stored(engine)] == ["twice"]


def test_a_torn_spool_line_is_dropped_and_the_rest_flushed(
    engine: Engine, dead_engine: Engine, settings: Settings, clock: Clock
) -> None:
    down = make_log(dead_engine, None, settings, clock)
    down.record("event.0")
    spool = Path(settings.event_spool_path)
    with spool.open("a") as f:
        f.write('{"event_uuid": "torn by a cra\n')
    clock.tick()
    down.record("event.1")
    assert make_log(engine, None, settings, clock).flush_pending() == 2
    assert [t for t, *_ in stored(engine)] == ["event.0", "event.1"]


def test_a_dead_database_is_not_retried_for_every_event(
    dead_engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    attempts = []
    event.listen(dead_engine, "do_connect", lambda *a: attempts.append(1))
    log = make_log(dead_engine, fake_redis, settings, clock)
    for _ in range(5):
        log.record("burst")
    assert len(attempts) == 1
    clock.tick(eventlog_module.DOWN_MEMO_SECONDS + 0.1)
    log.record("later")
    assert len(attempts) == 2
    assert fake_redis.llen(pending_key(settings)) == 6


def test_while_another_process_flushes_new_events_queue_behind(
    engine: Engine, dead_engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    make_log(dead_engine, fake_redis, settings, clock).record("old")
    fake_redis.set(f"{pending_key(settings)}:flush-lock", "someone-else")
    clock.tick()
    live = make_log(engine, fake_redis, settings, clock)
    live.record("new")
    assert stored(engine) == []  # "new" must not overtake "old"
    assert fake_redis.llen(pending_key(settings)) == 2
    fake_redis.delete(f"{pending_key(settings)}:flush-lock")
    assert live.flush_pending() == 2
    assert [t for t, *_ in stored(engine)] == ["old", "new"]


def test_record_never_raises_even_when_every_store_fails(
    dead_engine: Engine,
    server: fakeredis.FakeServer,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings = settings_factory(event_spool_path=str(blocker / "events.spool"))
    server.connected = False
    log = make_log(dead_engine, fakeredis.FakeRedis(server=server), settings, clock)
    with caplog.at_level(logging.ERROR, logger="worker.infra.eventlog"):
        log.record("doomed", payload={"n": 1})
        assert log.flush_pending() == 0
    # The event is not silently dropped: the last resort is the log itself.
    assert any("doomed" in r.getMessage() for r in caplog.records)


def test_unserialisable_and_odd_inputs_do_not_raise(engine: Engine, settings: Settings, clock: Clock) -> None:
    log = make_log(engine, None, settings, clock)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    log.record("odd", aggregate_id="x" * 500, payload={"obj": object(), "cycle": cyclic, 3: {1, 2}})
    log.record("naive", occurred_at=datetime(2026, 1, 1, 12, 0))  # naive on purpose: read as UTC
    (first, second) = stored(engine)
    assert first[2]["3"] == [1, 2]
    assert second[1] == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with engine.connect() as conn:
        assert len(conn.execute(select(Row.aggregate_id).order_by(Row.id)).scalars().first() or "") == 200


def test_from_settings_builds_a_working_log(settings_factory: Callable[..., Settings], server: Any) -> None:
    settings = settings_factory()
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    log = EventLog.from_settings(settings)
    try:
        log.record("built", payload={"ok": True})
    finally:
        log.close()
    assert [t for t, *_ in stored(engine)] == ["built"]
    engine.dispose()


def test_record_flushes_a_bounded_part_of_a_long_backlog(
    engine: Engine,
    dead_engine: Engine,
    fake_redis: Any,
    settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventlog_module, "FLUSH_BATCH", 2)
    down = make_log(dead_engine, fake_redis, settings, clock)
    for n in range(7):
        down.record(f"event.{n}")
        clock.tick()
    live = make_log(engine, fake_redis, settings, clock)
    live.record("event.7")
    # Two batches of two were written; the new event queued behind the other three.
    assert [t for t, *_ in stored(engine)] == [f"event.{n}" for n in range(4)]
    assert fake_redis.llen(pending_key(settings)) == 4
    assert live.flush_pending() == 4
    assert [t for t, *_ in stored(engine)] == [f"event.{n}" for n in range(8)]


def test_an_unreadable_redis_item_is_dropped_and_the_rest_flushed(
    engine: Engine, dead_engine: Engine, fake_redis: Any, settings: Settings, clock: Clock
) -> None:
    down = make_log(dead_engine, fake_redis, settings, clock)
    down.record("event.0")
    fake_redis.rpush(pending_key(settings), "{not json")
    down.record("event.1")
    assert make_log(engine, fake_redis, settings, clock).flush_pending() == 2
    assert [t for t, *_ in stored(engine)] == ["event.0", "event.1"]
    assert fake_redis.llen(pending_key(settings)) == 0


def test_on_sqlite_an_event_recorded_inside_a_rolled_back_write_survives(
    settings_factory: Callable[..., Settings],
) -> None:
    # SQLite has one writer: the event cannot commit while the caller holds the write lock, so it waits
    # a short busy timeout, spools (Redis is a closed port here, so to the file), and is flushed later.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    settings = settings_factory(redis_url=f"redis://127.0.0.1:{sock.getsockname()[1]}/0")
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    log = EventLog.from_settings(settings)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(
                insert(Supplier),
                [
                    {
                        "source": "odoo-suppliers",
                        "odoo_id": 1,
                        "name": "A",
                        "raw": {},
                        "content_hash": "h",
                        "first_synced_at": T0,
                        "last_synced_at": T0,
                        "is_company": True,
                        "active": True,
                        "supplier_rank": 1,
                    }
                ],
            )
            log.record("odoo:supplier:upsert_failed", aggregate_id="supplier:1")
            transaction.rollback()
        assert stored(engine) == []
        assert log.flush_pending() == 1
    finally:
        log.close()
        sock.close()
    assert [t for t, *_ in stored(engine)] == ["odoo:supplier:upsert_failed"]
    with engine.connect() as conn:
        assert conn.execute(select(Supplier.id)).first() is None
    engine.dispose()
