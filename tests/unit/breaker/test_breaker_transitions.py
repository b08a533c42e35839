"""Every transition and rule, on the in-process store and on Redis scripts (fakeredis + Lua)."""

from __future__ import annotations

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded
from breaker_helpers import BreakerMaker, FakeClock, RecordingListener

from worker.breaker import CircuitBreaker
from worker.breaker.state import BreakerState
from worker.infra.errors import (
    CircuitOpenError,
    FatalUpstreamError,
    InvalidRecord,
    RetriableUpstreamError,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def boom() -> None:
    raise RetriableUpstreamError("upstream 503 token=s3cr3t-value", status_code=503)


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(RetriableUpstreamError):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(lambda: "ok") == "ok"


def test_consecutive_failures_trip_once(make_breaker: BreakerMaker) -> None:
    listener = RecordingListener()
    b = make_breaker(listener, failure_threshold=3, minimum_calls=100)
    fail(b, 2)
    assert b.state() == CLOSED
    fail(b)
    assert b.state() == OPEN
    assert listener.moves == [("closed", "open")]
    _, _, _, reason, stats = listener.transitions[0]
    assert reason == "consecutive_failures"
    assert stats["consecutive_failures"] == 3
    assert stats["total_failures"] == 3
    assert stats["state"] == "open"


def test_a_success_ends_the_run(make_breaker: BreakerMaker) -> None:
    b = make_breaker(failure_threshold=3, minimum_calls=100)
    fail(b, 2)
    succeed(b)
    fail(b, 2)
    assert b.state() == CLOSED
    fail(b)
    assert b.state() == OPEN


def test_client_errors_do_not_count(make_breaker: BreakerMaker) -> None:
    b = make_breaker(failure_threshold=1)
    for exc in (FatalUpstreamError("404", status_code=404), InvalidRecord("bad")):
        with pytest.raises(type(exc)):
            b.call(lambda e=exc: (_ for _ in ()).throw(e))
    assert b.state() == CLOSED
    assert b.stats().total_failures == 0


def test_open_fails_fast_without_counting(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=1, open_seconds=10)
    fail(b)
    clock.advance(4)
    calls = []
    with pytest.raises(CircuitOpenError) as err:
        b.call(calls.append, 1)
    assert calls == []
    assert err.value.name == "up"
    assert err.value.retry_after_seconds == pytest.approx(6, abs=0.01)
    stats = b.stats()
    assert (stats.total_failures, stats.total_rejected) == (1, 1)


def test_failure_rate_trips_what_a_count_never_would(make_breaker: BreakerMaker) -> None:
    listener = RecordingListener()
    b = make_breaker(listener, failure_threshold=5, failure_rate_threshold=0.5, minimum_calls=10)
    # 80% failures, never more than four in a row: a consecutive-count breaker stays closed.
    for _ in range(2):
        fail(b, 4)
        succeed(b)
    assert listener.moves == []  # the rate is judged on a failure, once minimum_calls is reached
    fail(b)
    assert listener.moves == [("closed", "open")]
    assert listener.transitions[0][3] == "failure_rate"
    assert listener.transitions[0][4]["window_calls"] == 11
    assert listener.transitions[0][4]["window_failures"] == 9


def test_rate_needs_minimum_calls(make_breaker: BreakerMaker) -> None:
    b = make_breaker(failure_threshold=100, failure_rate_threshold=0.5, minimum_calls=10)
    for _ in range(4):
        fail(b)
        succeed(b)
    fail(b)
    assert b.state() == CLOSED  # 5 of 9: over the rate, under the minimum
    succeed(b)
    fail(b)
    assert b.state() == OPEN  # 6 of 11


def test_window_slides(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=100, minimum_calls=4, window_seconds=10)
    fail(b, 3)
    clock.advance(11)
    assert b.stats().window_calls == 0
    succeed(b, 2)
    fail(b)
    b.flush()
    stats = b.stats()
    assert (stats.window_calls, stats.window_failures, b.state()) == (3, 1, CLOSED)
    assert stats.total_calls == 6


def test_slow_success_counts_as_failure(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=2, slow_call_seconds=5, minimum_calls=100)
    for _ in range(2):
        with b.guard():
            clock.advance(6)
    assert b.state() == OPEN
    assert b.stats().last_failure_error == "slow_call"


def test_half_open_permits_and_close(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    listener = RecordingListener()
    b = make_breaker(
        listener, failure_threshold=1, open_seconds=10, half_open_max_calls=2, success_threshold=2
    )
    fail(b)
    clock.advance(10)
    with b.guard(), b.guard():  # two probes in flight at once
        with pytest.raises(CircuitOpenError):
            b.call(lambda: None)
        assert b.stats().permits_in_use == 2
    assert b.state() == CLOSED
    assert listener.moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert listener.transitions[-1][3] == "probes_succeeded"


def test_failed_probes_grow_the_open_period(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=1, open_seconds=10, open_backoff_multiplier=2, open_max_seconds=30)
    fail(b)
    periods = []
    for _ in range(4):
        stats = b.stats()
        assert stats.next_attempt_at is not None and stats.opened_at is not None
        periods.append(round(stats.next_attempt_at - stats.opened_at, 3))
        clock.advance(periods[-1])
        fail(b)  # the probe fails
    assert periods == [10, 20, 30, 30]
    clock.advance(30)
    succeed(b, 2)
    assert b.state() == CLOSED
    fail(b)
    stats = b.stats()
    assert stats.next_attempt_at is not None and stats.opened_at is not None
    assert stats.next_attempt_at - stats.opened_at == pytest.approx(10)


def test_dead_holders_permit_is_reclaimed(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=1, open_seconds=1, permit_timeout_seconds=20)
    fail(b)
    clock.advance(1)
    dead = b.guard()
    dead.__enter__()  # a probe whose process dies: it never reports
    clock.advance(19)
    with pytest.raises(CircuitOpenError):
        succeed(b)
    clock.advance(1)
    succeed(b)  # the lease expired and went to this caller
    assert b.stats().consecutive_successes == 1


def test_late_success_cannot_close_a_reopened_breaker(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=1, open_seconds=5, success_threshold=1)
    fail(b)
    clock.advance(5)
    slow_probe = b.guard()
    slow_probe.__enter__()
    clock.advance(200)  # the lease expires; another probe fails and re-opens
    fail(b)
    assert b.state() == OPEN
    slow_probe.__exit__(None, None, None)
    assert b.state() == OPEN


def test_late_failure_cannot_reopen_a_closed_breaker(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=1, open_seconds=5, success_threshold=1)
    in_flight = b.guard()
    in_flight.__enter__()  # admitted while CLOSED, generation 0
    fail(b)
    clock.advance(5)
    succeed(b)  # probe closes: generation 3
    late = RetriableUpstreamError("x")
    assert in_flight.__exit__(RetriableUpstreamError, late, None) is False  # re-raised
    assert b.state() == CLOSED
    stats = b.stats()
    assert (stats.consecutive_failures, stats.total_failures) == (0, 2)


def test_forced_states_and_reset(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    listener = RecordingListener()
    b = make_breaker(listener, failure_threshold=1, open_seconds=1)
    b.force_open("alice")
    clock.advance(100)
    with pytest.raises(CircuitOpenError):
        succeed(b)  # forced open never half-opens
    b.force_close("bob")
    fail(b, 5)
    assert b.state() == BreakerState.FORCED_CLOSED
    assert b.stats().total_failures == 5
    b.reset("carol")
    assert b.state() == CLOSED
    fail(b)
    assert b.state() == OPEN
    assert listener.moves == [
        ("closed", "forced_open"),
        ("forced_open", "forced_closed"),
        ("forced_closed", "closed"),
        ("closed", "open"),
    ]
    assert [t[3] for t in listener.transitions[:3]] == [
        "operator:alice",
        "operator:bob",
        "operator:carol",
    ]


def test_error_message_never_reaches_stats(make_breaker: BreakerMaker) -> None:
    b = make_breaker(failure_threshold=10)
    fail(b)
    assert b.stats().last_failure_error == "RetriableUpstreamError:503"
    assert "s3cr3t" not in repr(b.stats().as_dict())


def test_decorator_and_context_manager(make_breaker: BreakerMaker) -> None:
    b = make_breaker(failure_threshold=2)

    @b
    def add(x: int, y: int) -> int:
        return x + y

    assert add(2, 3) == 5
    with pytest.raises(RetriableUpstreamError), b.guard():
        boom()
    assert b.stats().consecutive_failures == 1


def test_interrupted_probe_gives_its_permit_back(make_breaker: BreakerMaker, clock: FakeClock) -> None:
    b = make_breaker(failure_threshold=1, open_seconds=1, success_threshold=1)
    fail(b)
    clock.advance(1)
    with pytest.raises(KeyboardInterrupt), b.guard():
        raise KeyboardInterrupt
    assert b.stats().permits_in_use == 0
    succeed(b)
    assert b.state() == CLOSED


def test_broken_listener_never_fails_the_call(make_breaker: BreakerMaker) -> None:
    class Broken(RecordingListener):
        def on_transition(self, *args: object) -> None:  # type: ignore[override]
            raise RuntimeError("listener bug")

    b = make_breaker(Broken(), failure_threshold=1)
    fail(b)
    assert b.state() == OPEN


@pytest.mark.parametrize("cancellation", [SoftTimeLimitExceeded, TimeLimitExceeded, Terminated])
def test_a_time_limit_inside_a_call_is_neither_a_failure_nor_a_success(
    make_breaker: BreakerMaker, clock: FakeClock, cancellation: type[Exception]
) -> None:
    # Celery's soft time limit is an Exception raised wherever the task is: it says nothing about
    # the upstream. Counted as a success, it would close a half-open breaker on no evidence.
    b = make_breaker(failure_threshold=2, open_seconds=1, success_threshold=1)
    fail(b)
    with pytest.raises(cancellation), b.guard():
        raise cancellation()
    assert b.stats().consecutive_failures == 1  # the streak is neither reset nor extended
    fail(b)
    assert b.state() == OPEN
    clock.advance(1)
    with pytest.raises(cancellation), b.guard():  # the half-open probe is cut short
        raise cancellation()
    assert b.state() != CLOSED
    assert b.stats().permits_in_use == 0  # its permit is given back for the next probe
    succeed(b)
    assert b.state() == CLOSED
