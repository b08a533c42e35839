"""The follow-up sweeper: follow-ups left pending on an unlocked source (their releaser died, or could
not enqueue them) are enqueued once per grace period, and never while a run holds the source."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from worker.celeryapp import followups
from worker.celeryapp.followups import Sweeper, connect_followup_sweeper, grace_seconds, sweep
from worker.infra.settings import Settings
from worker.sync.lock import Acquired, Deferred, Holder, RunLock, followups_name, lock_name
from worker.sync.sources import SyncSource

WOO = SyncSource.WOOCOMMERCE_PRODUCTS
ODOO = SyncSource.ODOO_SUPPLIERS
SOURCES = [str(WOO), str(ODOO)]
SYNC = "tasks.sync.sync_source"
FULL, INCREMENTAL = "full", "incremental"


class Sent:
    """The ``send`` a sweep is given: remembers each (source, full) it was asked to enqueue."""

    def __init__(self) -> None:
        self.calls: list[tuple[SyncSource, bool]] = []

    def __call__(self, source: SyncSource, full: bool) -> None:
        self.calls.append((source, full))


@pytest.fixture
def settings(settings_factory: Any) -> Settings:
    return settings_factory(sync_lock_ttl_seconds=30)  # a grace of 120 s


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def a_lock(client: fakeredis.FakeRedis, settings: Settings, mode: str, source: SyncSource = WOO) -> RunLock:
    return RunLock(client, settings.redis_key_prefix, source, 30, Holder.here(None, mode))


def held(client: fakeredis.FakeRedis, settings: Settings, source: SyncSource = WOO) -> RunLock:
    lock = a_lock(client, settings, INCREMENTAL, source)
    assert isinstance(lock.acquire(1), Acquired)
    return lock


def defer(
    client: fakeredis.FakeRedis, settings: Settings, mode: str, request: int, source: SyncSource = WOO
) -> None:
    assert isinstance(a_lock(client, settings, mode, source).acquire(request), Deferred)


def die(client: fakeredis.FakeRedis, settings: Settings, source: SyncSource = WOO) -> None:
    """What the lock's TTL does once a holder that died stops renewing it: no release, no dispatch."""
    client.delete(lock_name(settings.redis_key_prefix, source))


def age_dispatch(
    client: fakeredis.FakeRedis, settings: Settings, seconds: float, source: SyncSource = WOO
) -> None:
    """Move the last dispatch ``seconds`` into the past, as if that much time had gone by."""
    key = followups_name(settings.redis_key_prefix, source)
    stamp = int(client.hget(key, "dispatched_at"))
    client.hset(key, "dispatched_at", stamp - int(seconds))


def pending(client: fakeredis.FakeRedis, settings: Settings, source: SyncSource = WOO) -> dict[str, str]:
    raw = client.hgetall(followups_name(settings.redis_key_prefix, source))
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_the_grace_is_four_lock_ttls_and_at_least_a_minute(settings_factory: Any) -> None:
    assert grace_seconds(settings_factory(sync_lock_ttl_seconds=30)) == 120
    assert grace_seconds(settings_factory(sync_lock_ttl_seconds=5)) == 60


def test_nothing_pending_sends_nothing(client: fakeredis.FakeRedis, settings: Settings) -> None:
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == []
    assert sent.calls == []
    assert client.keys("*") == []  # a sweep of nothing writes nothing


def test_orphaned_followups_are_sent_once(client: fakeredis.FakeRedis, settings: Settings) -> None:
    held(client, settings)
    defer(client, settings, INCREMENTAL, 2)
    die(client, settings)  # the holder died: nobody will hand the follow-up back
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == [WOO]
    assert sent.calls == [(WOO, False)]
    assert sweep(client, settings, sent, SOURCES) == []  # within the grace: the run it sent has time to start
    assert sent.calls == [(WOO, False)]
    assert pending(client, settings)[INCREMENTAL] == "2"  # still owed until a fresh pass serves it


def test_a_followup_sent_that_never_ran_is_sent_again_after_the_grace(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    held(client, settings)
    defer(client, settings, INCREMENTAL, 2)
    die(client, settings)
    sent = Sent()
    sweep(client, settings, sent, SOURCES)
    age_dispatch(client, settings, grace_seconds(settings) - 5)
    assert sweep(client, settings, sent, SOURCES) == []
    age_dispatch(client, settings, 10)  # the grace has passed and the follow-up is still pending
    assert sweep(client, settings, sent, SOURCES) == [WOO]
    assert sent.calls == [(WOO, False), (WOO, False)]


def test_a_locked_source_is_not_swept(client: fakeredis.FakeRedis, settings: Settings) -> None:
    holder = held(client, settings)
    defer(client, settings, FULL, 2)
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == []  # its holder hands the follow-up back at its end
    assert sent.calls == []
    assert "dispatched_at" not in pending(client, settings)  # the claim was not taken either
    assert holder.release() == [FULL]


def test_a_full_followup_is_sent_as_one_full_run(client: fakeredis.FakeRedis, settings: Settings) -> None:
    held(client, settings)
    defer(client, settings, INCREMENTAL, 2)
    defer(client, settings, FULL, 3)
    die(client, settings)
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == [WOO]
    assert sent.calls == [(WOO, True)]  # a full run serves the incremental request too


def test_sources_are_swept_each_on_its_own(client: fakeredis.FakeRedis, settings: Settings) -> None:
    held(client, settings, ODOO)
    defer(client, settings, INCREMENTAL, 2, ODOO)
    die(client, settings, ODOO)
    held(client, settings, WOO)
    defer(client, settings, FULL, 2, WOO)  # a live run holds this one
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == [ODOO]
    assert sent.calls == [(ODOO, False)]


def test_a_release_that_hands_followups_back_keeps_the_sweeper_off_for_the_grace(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    holder = held(client, settings)
    defer(client, settings, INCREMENTAL, 2)
    assert holder.release() == [INCREMENTAL]  # its caller enqueues the follow-up now
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == []  # the lock is free, but the follow-up is on its way
    age_dispatch(client, settings, grace_seconds(settings) + 1)
    assert sweep(client, settings, sent, SOURCES) == [WOO]  # it never started (the enqueue failed): sent here
    assert sent.calls == [(WOO, False)]


def test_a_followup_served_by_a_fresh_pass_is_not_swept(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    held(client, settings)
    defer(client, settings, INCREMENTAL, 2)
    die(client, settings)
    run = a_lock(client, settings, INCREMENTAL)
    assert isinstance(run.acquire(3), Acquired)
    run.clear_served(3, full=False)
    assert run.release() == []
    sent = Sent()
    assert sweep(client, settings, sent, SOURCES) == []
    assert client.keys("*") == []


def test_two_workers_sweeping_at_once_send_one_run(client: fakeredis.FakeRedis, settings: Settings) -> None:
    held(client, settings)
    defer(client, settings, INCREMENTAL, 2)
    die(client, settings)
    sent = Sent()
    results: list[list[SyncSource]] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        results.append(sweep(client, settings, sent, SOURCES))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    assert sent.calls == [(WOO, False)]


# -- the thread and its wiring into the worker ---------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_the_sweeper_sweeps_until_stopped_and_outlives_a_failed_sweep() -> None:
    calls: list[int] = []

    def sweep_once() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("Redis away")

    sweeper = Sweeper(sweep_once, interval=0.01)
    sweeper.start()
    wait_until(lambda: len(calls) >= 4, "four sweeps")
    sweeper.stop()
    sweeper._thread.join(timeout=20)
    assert not sweeper._thread.is_alive()
    assert sweeper._thread.daemon  # never keeps a worker from exiting


class FakeSignal:
    def __init__(self) -> None:
        self.receivers: list[Callable[..., Any]] = []

    def connect(self, receiver: Callable[..., Any], weak: bool = True) -> None:
        self.receivers.append(receiver)

    def disconnect(self, receiver: Callable[..., Any]) -> None:
        self.receivers.remove(receiver)

    def send(self, **kwargs: Any) -> None:
        for receiver in list(self.receivers):
            receiver(**kwargs)


class RecordingApp:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **kwargs: Any) -> Any:
        self.sent.append({"name": name, **kwargs})
        return None


def test_a_worker_sweeps_while_it_is_up_and_sends_the_sources_task(
    client: fakeredis.FakeRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready, shutting_down = FakeSignal(), FakeSignal()
    monkeypatch.setattr(followups, "worker_ready", ready)
    monkeypatch.setattr(followups, "worker_shutting_down", shutting_down)
    started: list[Sweeper] = []

    class QuickSweeper(Sweeper):
        def __init__(self, sweep_once: Callable[[], object]) -> None:
            super().__init__(sweep_once, interval=0.01)
            started.append(self)

    monkeypatch.setattr(followups, "Sweeper", QuickSweeper)
    app = RecordingApp()
    disconnect = connect_followup_sweeper(settings, lambda: client, app, lambda: SOURCES)
    held(client, settings, ODOO)
    defer(client, settings, INCREMENTAL, 2, ODOO)
    die(client, settings, ODOO)
    held(client, settings, WOO)
    defer(client, settings, FULL, 2, WOO)
    die(client, settings, WOO)
    assert started == []  # nothing runs before the worker is up

    ready.send(sender=None)
    wait_until(lambda: len(app.sent) >= 2, "both orphaned follow-ups to be sent")
    shutting_down.send(sender=None)
    (sweeper,) = started
    sweeper._thread.join(timeout=20)
    assert not sweeper._thread.is_alive()
    assert sorted(app.sent, key=lambda m: m["queue"]) == sorted(
        [
            {"name": SYNC, "kwargs": {"source": ODOO, "full": False}, "queue": "sync-incremental"},
            {"name": SYNC, "kwargs": {"source": WOO, "full": True}, "queue": "sync-full"},
        ],
        key=lambda m: m["queue"],
    )  # no request number: the worker numbers the message at its first delivery

    disconnect()
    assert ready.receivers == [] and shutting_down.receivers == []
