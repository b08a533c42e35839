"""Rules that only matter with several workers sharing one Redis, and Redis going away."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import fakeredis
import pytest
from breaker_helpers import FakeClock, RecordingEventLog, RecordingListener, RoundTrips

from worker.breaker import BreakerPolicy, CircuitBreaker, EventLogListener
from worker.breaker.state import BreakerState
from worker.infra.errors import CircuitOpenError, RetriableUpstreamError


def boom() -> None:
    raise RetriableUpstreamError("503", status_code=503)


def worker(
    server: fakeredis.FakeServer, clock: FakeClock, listener: Any = None, **policy: Any
) -> CircuitBreaker:
    return CircuitBreaker(
        "up",
        fakeredis.FakeRedis(server=server),
        BreakerPolicy(**policy),
        listener=listener,
        clock=clock,
    )


def test_healthy_call_is_one_round_trip(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    trips = RoundTrips(server)
    b = CircuitBreaker("up", trips.client, BreakerPolicy(), clock=clock)
    b.call(lambda: None)  # the first call also loads the script (NOSCRIPT, SCRIPT LOAD, again)
    trips.count = 0
    for _ in range(5):
        b.call(lambda: None)
    assert trips.count == 5
    assert b.stats().total_successes == 5  # the sixth is still buffered until the next trip
    b.flush()
    assert b.stats().total_successes == 6


def test_fail_fast_is_one_round_trip(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    trips = RoundTrips(server)
    b = CircuitBreaker("up", trips.client, BreakerPolicy(failure_threshold=1), clock=clock)
    with pytest.raises(RetriableUpstreamError):
        b.call(boom)
    trips.count = 0
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            b.call(lambda: None)
    assert trips.count == 3
    assert b.stats().total_rejected == 3


def test_script_is_loaded_again_after_redis_forgets_it(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    client = fakeredis.FakeRedis(server=server)
    b = CircuitBreaker("up", client, BreakerPolicy(), clock=clock)
    b.call(lambda: None)
    client.script_flush()  # as after a Redis restart
    b.call(lambda: None)
    b.flush()
    assert b.stats().total_successes == 2
    assert not b.stats().degraded


def test_late_success_does_not_wipe_later_failures(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    a = worker(server, clock, failure_threshold=3, minimum_calls=100)
    b = worker(server, clock, failure_threshold=3, minimum_calls=100)
    a.call(lambda: None)  # buffered in a, admitted before any failure
    for _ in range(2):
        with pytest.raises(RetriableUpstreamError):
            b.call(boom)
    a.flush()  # a's success arrives after b's failures: they came after it, they stay
    assert a.stats().consecutive_failures == 2
    with pytest.raises(RetriableUpstreamError):
        b.call(boom)
    assert a.state() == BreakerState.OPEN


def test_success_admitted_after_failures_ends_their_run(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    a = worker(server, clock, failure_threshold=3, minimum_calls=100)
    b = worker(server, clock, failure_threshold=3, minimum_calls=100)
    for _ in range(2):
        with pytest.raises(RetriableUpstreamError):
            b.call(boom)
    a.call(lambda: None)
    assert b.stats().consecutive_failures == 0


def test_buffered_success_of_old_generation_only_reaches_totals(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    a = worker(server, clock, failure_threshold=1, open_seconds=1, success_threshold=1)
    b = worker(server, clock, failure_threshold=1, open_seconds=1, success_threshold=1)
    a.call(lambda: None)  # buffered under generation 0
    with pytest.raises(RetriableUpstreamError):
        b.call(boom)  # generation 1: open
    a.flush()
    stats = a.stats()
    assert (stats.state, stats.total_successes, stats.window_calls) == (BreakerState.OPEN, 1, 1)


def test_one_event_per_transition_for_the_fleet(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    logs = [RecordingEventLog() for _ in range(3)]
    workers = [
        worker(server, clock, EventLogListener(log), failure_threshold=2, open_seconds=5, success_threshold=1)
        for log in logs
    ]
    for w in workers:
        with pytest.raises((RetriableUpstreamError, CircuitOpenError)):
            w.call(boom)
    clock.advance(5)
    results = []
    for w in workers:
        try:
            w.call(lambda: None)
            results.append("ok")
        except CircuitOpenError:
            results.append("refused")
    all_types = sorted(t for log in logs for t in log.types)
    assert all_types == ["breaker.closed", "breaker.half_opened", "breaker.opened"]
    opened = next(e for log in logs for e in log.events if e["type"] == "breaker.opened")
    assert opened["aggregate_id"] == "up"
    assert opened["payload"]["stats"]["consecutive_failures"] == 2
    assert results == ["ok", "ok", "ok"]  # the probe closed it (success_threshold=1)


def test_operator_commands_are_audited(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    log = RecordingEventLog()
    b = worker(server, clock, EventLogListener(log))
    b.force_open("alice")
    b.force_close("alice")
    b.reset("bob")
    assert log.types == ["breaker.forced_open", "breaker.forced_closed", "breaker.reset"]
    assert [e["metadata"] for e in log.events] == [{"actor": "alice"}, {"actor": "alice"}, {"actor": "bob"}]
    assert log.events[2]["payload"]["reason"] == "operator"


def test_degrades_and_recovers(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    listener = RecordingListener()
    trips = RoundTrips(server)
    client = trips.client
    b = CircuitBreaker(
        "up",
        client,
        BreakerPolicy(failure_threshold=2, open_seconds=100),
        listener=listener,
        clock=clock,
        retry_interval=5,
    )
    b.call(lambda: None)
    server.connected, trips.count = False, 0  # Redis goes down
    for _ in range(2):
        with pytest.raises(RetriableUpstreamError):
            b.call(boom)  # the local breaker counts them
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)
    assert trips.count == 1  # one failed attempt, then no Redis until the interval passed
    assert b.stats().degraded
    assert listener.store_changes == [("up", True, "ConnectionError")]
    server.connected = True
    clock.advance(5)
    assert b.call(lambda: "shared") == "shared"  # back on the shared, still closed, state
    assert listener.store_changes[-1] == ("up", False, "redis answered")
    assert not b.stats().degraded


def test_redis_failing_mid_call_counts_failure_locally(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    client = fakeredis.FakeRedis(server=server)
    b = CircuitBreaker("up", client, BreakerPolicy(failure_threshold=1), clock=clock)

    def fail_after_redis_dies() -> None:
        server.connected = False
        boom()

    with pytest.raises(RetriableUpstreamError):
        b.call(fail_after_redis_dies)
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)


def test_success_after_failures_is_reported_at_once(server: fakeredis.FakeServer, clock: FakeClock) -> None:
    a = worker(server, clock, failure_threshold=3, minimum_calls=100)
    b = worker(server, clock, failure_threshold=3, minimum_calls=100)
    for _ in range(2):
        with pytest.raises(RetriableUpstreamError):
            b.call(boom)
    a.call(lambda: None)  # the run was not empty: no buffering, the others see it now
    with pytest.raises(RetriableUpstreamError):
        b.call(boom)
    assert b.state() == BreakerState.CLOSED
    assert b.stats().consecutive_failures == 1


def test_forked_child_does_not_resend_parent_successes(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    import os

    b = worker(server, clock)
    b.call(lambda: None)  # buffered in the parent
    pid = os.fork()
    if pid == 0:  # the child's buffer starts empty
        os._exit(0 if b._buffer.take().count == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b._buffer.take().count == 1  # the parent still owns its success


def test_threads_share_a_breaker_and_every_success_is_counted(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    # Threads share the client's connection pool; every success still reaches Redis once.
    b = worker(server, clock)
    start = threading.Barrier(8)

    def run() -> None:
        start.wait()
        for _ in range(50):
            b.call(lambda: None)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.flush()
    stats = b.stats()
    assert (stats.total_successes, stats.total_calls, stats.degraded) == (400, 400, False)


def test_interrupt_between_send_and_read_leaves_no_reply_behind(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    interrupt = [False]

    class Interrupted(fakeredis.FakeRedisConnection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            super().send_packed_command(command, check_health)
            if interrupt[0]:  # e.g. a signal handler raising just after the request went out
                interrupt[0] = False
                raise KeyboardInterrupt

    a = CircuitBreaker(
        "up", fakeredis.FakeRedis(server=server, connection_class=Interrupted), BreakerPolicy(), clock=clock
    )
    other = worker(server, clock)
    a.call(lambda: None)
    other.force_open("op")
    interrupt[0] = True
    with pytest.raises(KeyboardInterrupt):
        a.call(lambda: None)  # Redis answered "refused"; nobody read it
    other.reset("op")
    assert a.call(lambda: "ok") == "ok"  # the answer to this call, not the one left unread


def test_window_stays_bounded_and_exact_on_healthy_calls(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    # Healthy calls add to the newest bucket without reading the window; each new bucket
    # still trims the old ones, however long the run.
    b = worker(server, clock, window_seconds=20)  # buckets of 1 s
    client = fakeredis.FakeRedis(server=server)
    for _ in range(100):
        for _ in range(3):
            b.call(lambda: None)
        clock.advance(1)
        assert client.hlen("syncworker:breaker:{up}:window") <= 20
    b.flush()
    stats = b.stats()
    # A buffered success is dated when it arrives: the window (the last 20 s) holds 19 seconds of
    # three calls each, plus the last success, flushed in the new second.
    assert (stats.window_calls, stats.total_successes) == (19 * 3 + 1, 300)


def test_in_process_store_is_created_only_when_redis_fails(
    server: fakeredis.FakeServer, clock: FakeClock
) -> None:
    b = worker(server, clock, failure_threshold=1)
    b.call(lambda: None)
    b.flush()
    assert not b.stats().degraded
    assert b._local == {}  # no Lua runtime in a process whose Redis always answered
    server.connected = False
    b.call(lambda: None)
    assert b.stats().degraded
    assert "store" in b._local


def test_degraded_breaker_keeps_working_in_a_forked_child(clock: FakeClock) -> None:
    import os

    b = CircuitBreaker("up", None, BreakerPolicy(failure_threshold=1), clock=clock)
    b.call(lambda: None)  # the in-process store and its runtime exist before the fork
    pid = os.fork()
    if pid == 0:
        try:
            with contextlib.suppress(RetriableUpstreamError):
                b.call(boom)
            os._exit(0 if b.state() == BreakerState.OPEN else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b.state() == BreakerState.CLOSED  # the child's failure stayed in the child


def test_healthy_admission_runs_one_hmget_and_no_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same script runs on Redis; what it asks of the in-process keyspace it asks of Redis.
    from worker.breaker.keyspace import Keyspace
    from worker.breaker.local_redis import LocalRedis
    from worker.breaker.state import NO_PENDING, PendingSuccesses
    from worker.breaker.store import BreakerStore

    commands: list[str] = []
    execute = Keyspace.execute

    def recording(self: Keyspace, args: list[bytes]) -> Any:
        commands.append(args[0].decode())
        return execute(self, args)

    monkeypatch.setattr(Keyspace, "execute", recording)
    store = BreakerStore("up", LocalRedis(clock=lambda: 1_700_000_000.0), BreakerPolicy(), "up")
    store.admit(PendingSuccesses(0, 1, 0))  # starts the window's bucket
    commands.clear()
    store.admit(NO_PENDING)
    assert commands == ["HMGET"]
    commands.clear()
    store.admit(PendingSuccesses(0, 1, 0))  # a buffered success: the clock, one write each
    assert commands == ["HMGET", "TIME", "HINCRBY", "HSET"]
