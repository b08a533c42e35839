"""The races measured in pybreaker, replayed with real processes on the real Redis.

pybreaker with 16 processes: all 16 probe after the open period, a threshold of 10 lets 25
failing calls through, an 80% failure rate never trips, and a process that notices a state change
resets the shared counters. Here each is asserted gone, by counting.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import breaker_fleet as fleet
import pytest
import redis

from worker.breaker.state import BreakerState
from worker.infra.errors import CircuitOpenError

pytestmark = pytest.mark.integration

CTX = multiprocessing.get_context("fork")
PROCESSES = 16


def run(target: Any, args_for: Any, n: int) -> None:
    procs = [CTX.Process(target=target, args=args_for(i)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def drain(queue: Any) -> list[Any]:
    items = []
    while True:
        try:
            items.append(queue.get(timeout=0.5))
        except Exception:
            return items


def test_only_half_open_max_calls_probe(key_prefix: str) -> None:
    policy = {"failure_threshold": 1, "open_seconds": 0.5, "half_open_max_calls": 2, "success_threshold": 5}
    breaker = fleet.make(key_prefix, policy)
    with pytest.raises(Exception, match="503"):
        breaker.call(fleet.fail)
    assert breaker.state() == BreakerState.OPEN
    time.sleep(0.6)  # let the open period pass before anyone asks
    barrier, refused, out = CTX.Barrier(PROCESSES), CTX.Value("i", 0), CTX.Queue()
    expected_refusals = PROCESSES - 2
    run(fleet.probe_once, lambda i: (key_prefix, policy, barrier, refused, expected_refusals, out), PROCESSES)
    results = drain(out)
    assert sorted(results) == ["probe"] * 2 + ["refused"] * expected_refusals
    assert breaker.stats().consecutive_successes == 2


def test_threshold_lets_through_at_most_the_calls_in_flight(key_prefix: str) -> None:
    policy = {"failure_threshold": 10, "minimum_calls": 1000, "open_seconds": 60}
    barrier, out = CTX.Barrier(PROCESSES), CTX.Queue()
    run(fleet.fail_until_refused, lambda i: (key_prefix, policy, barrier, out), PROCESSES)
    reached = sum(drain(out))
    stats = fleet.make(key_prefix, policy).stats()
    # Every call that reached the upstream was recorded...
    assert stats.total_failures == reached
    # ...exactly ten of them counted (the rest were admitted before the trip: stale generation)...
    assert stats.consecutive_failures == 10
    assert stats.generation == 1
    # ...and each other process had at most one call in flight when it tripped.
    assert reached <= 10 + (PROCESSES - 1)


def test_failure_rate_trips_across_the_fleet(key_prefix: str) -> None:
    policy = {
        "failure_threshold": 10_000,
        "failure_rate_threshold": 0.5,
        "minimum_calls": 20,
        "open_seconds": 60,
    }
    events, out = CTX.Queue(), CTX.Queue()
    run(fleet.mixed_calls, lambda i: (key_prefix, policy, 10, events, out), PROCESSES)
    transitions = drain(events)
    assert transitions == [("closed", "open", "failure_rate")]
    stats = fleet.make(key_prefix, policy).stats()
    assert stats.state == BreakerState.OPEN
    assert stats.window_calls >= 20


def test_noticing_a_state_change_does_not_reset_shared_counters(key_prefix: str) -> None:
    policy = {"failure_threshold": 5, "minimum_calls": 1000, "open_seconds": 60}
    barrier, out = CTX.Barrier(PROCESSES + 1), CTX.Queue()
    procs = [
        CTX.Process(target=fleet.observe, args=(key_prefix, policy, barrier, out)) for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    tripper = fleet.make(key_prefix, policy)
    barrier.wait()
    for _ in range(5):
        with pytest.raises(Exception, match="503"):
            tripper.call(fleet.fail)
    barrier.wait()
    for p in procs:
        p.join(30)
    assert drain(out) == ["refused"] * PROCESSES
    stats = tripper.stats()
    assert (stats.state, stats.generation) == (BreakerState.OPEN, 1)
    assert (stats.consecutive_failures, stats.total_failures) == (5, 5)
    assert stats.total_rejected == PROCESSES


def test_eight_processes_reach_a_dead_upstream_a_bounded_number_of_times(key_prefix: str) -> None:
    threshold, max_probes, workers = 3, 2, 8
    policy = {
        "failure_threshold": threshold,
        "minimum_calls": 1000,
        "open_seconds": 0.3,
        "open_backoff_multiplier": 1,
        "half_open_max_calls": max_probes,
        "success_threshold": 1,
    }
    events, out = CTX.Queue(), CTX.Queue()
    run(fleet.hammer, lambda i: (key_prefix, policy, 2.0, events, out), workers)
    per_process = drain(out)
    transitions = drain(events)
    closed_calls = sum(c for c, _, _ in per_process)
    probe_calls = sum(h for _, h, _ in per_process)
    half_opened = transitions.count(("open", "half_open", "open_period_elapsed"))
    opened = [t for t in transitions if t[1] == "open"]
    assert half_opened >= 2  # several open periods were exercised
    # One trip from CLOSED, then every re-open is a failed probe: events recorded once each.
    assert opened[0] == ("closed", "open", "consecutive_failures")
    assert opened[1:] == [("half_open", "open", "probe_failed")] * half_opened
    # The threshold, plus at most one call in flight per other process, reached it while closed;
    # afterwards only probes did, at most half_open_max_calls per open period.
    assert threshold <= closed_calls <= threshold + workers - 1
    assert half_opened <= probe_calls <= max_probes * half_opened
    stats = fleet.make(key_prefix, policy).stats()
    assert stats.total_failures == closed_calls + probe_calls


def test_permit_of_a_killed_process_is_reclaimed(key_prefix: str) -> None:
    policy = {
        "failure_threshold": 1,
        "open_seconds": 0.2,
        "half_open_max_calls": 1,
        "permit_timeout_seconds": 1.0,
        "success_threshold": 1,
    }
    breaker = fleet.make(key_prefix, policy)
    with pytest.raises(Exception, match="503"):
        breaker.call(fleet.fail)
    time.sleep(0.3)
    ready = CTX.Event()
    holder = CTX.Process(target=fleet.hold_permit, args=(key_prefix, policy, ready))
    holder.start()
    assert ready.wait(20)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    assert breaker.stats().permits_in_use == 1
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)  # the dead holder's lease still counts...
    for _ in range(200):  # ...until it expires on the server's clock
        try:
            breaker.call(lambda: None)
            break
        except CircuitOpenError:
            time.sleep(0.05)
    assert breaker.state() == BreakerState.CLOSED


def test_keys_share_one_hash_tag(key_prefix: str, redis_client: redis.Redis) -> None:
    breaker = fleet.make(key_prefix, {"failure_threshold": 1})
    with pytest.raises(Exception, match="503"):
        breaker.call(fleet.fail)
    keys = sorted(k.decode() for k in redis_client.scan_iter(match=f"{key_prefix}*"))
    assert len(keys) == 2  # state and window; no permits were handed out
    # Redis Cluster hashes only the first {...} of a key: all of them land in one slot.
    assert {k[k.index("{") : k.index("}") + 1] for k in keys} == {"{fleet}"}
