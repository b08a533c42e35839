"""The breaker's scripts on the real Redis and in process, side by side: the same replies and state.

Random policies and random sequences of admissions, outcome reports (with the generations and
permit tokens the admissions handed out, and stale ones), buffered successes, operator commands,
stats reads and clock moves run on two stores built from the production scripts: one on Redis
(127.0.0.1:6379, a key prefix of its own, deleted afterwards), one on ``LocalRedis``. Both must give
the same raw reply to every script run and end with the same keys, field for field.

Redis's clock cannot be set, so both hosts run the scripts behind one shim, the same on both: its
``redis.call('TIME')`` answers the test's clock, passed as the last two arguments; every other call
goes to the host unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.breaker.local_redis import LocalRedis
from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import NO_PENDING, Admission, BreakerState, PendingSuccesses
from worker.breaker.store import BreakerStore, BudgetBinding
from worker.budget import BudgetPolicy

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"
START = 1_700_000_000.123456

CLOCK_SHIM = """
local host = redis
local redis = {pcall = host.pcall, error_reply = host.error_reply, status_reply = host.status_reply}
function redis.call(command, ...)
  if command == 'TIME' then return {ARGV[#ARGV - 1], ARGV[#ARGV]} end
  return host.call(command, ...)
end
"""
DUMP = """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')}
"""


class Clock:
    def __init__(self) -> None:
        self.now = START

    def time_args(self) -> list[bytes]:
        sec, usec = divmod(round(self.now * 1_000_000), 1_000_000)
        return [b"%d" % sec, b"%d" % usec]


class ShimmedHost:
    """A script host whose scripts read the test's clock and record every raw reply."""

    def __init__(self, host: Any, clock: Clock) -> None:
        self.host, self.clock = host, clock
        self.replies: list[Any] = []

    def register_script(self, source: str, /) -> Callable[..., Any]:
        script = self.host.register_script(CLOCK_SHIM + source)

        def run(keys: Sequence[str], args: Sequence[bytes]) -> Any:
            reply = script(keys=keys, args=[*args, *self.clock.time_args()])
            self.replies.append(reply)
            return reply

        return run


policies = st.builds(
    BreakerPolicy,
    failure_threshold=st.integers(1, 5),
    failure_rate_threshold=st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0]),
    window_seconds=st.sampled_from([1, 3, 10, 60, 7.5]),
    minimum_calls=st.integers(1, 8),
    open_seconds=st.sampled_from([0.5, 1, 4, 30]),
    open_backoff_multiplier=st.sampled_from([1, 1.5, 2]),
    open_max_seconds=st.sampled_from([1, 16, 100]),
    half_open_max_calls=st.integers(1, 3),
    permit_timeout_seconds=st.sampled_from([1, 5, 60]),
    success_threshold=st.integers(1, 3),
)
pending = st.one_of(
    st.just(NO_PENDING),
    st.builds(
        PendingSuccesses,
        generation=st.integers(-1, 6),
        count=st.integers(0, 3),
        max_failure_seq=st.integers(0, 6),
        age_seconds=st.sampled_from([0.0, 0.25, 1.5, 20.0]),
        stale_count=st.integers(0, 2),
    ),
)
admit = st.tuples(st.just("admit"), pending)
record = st.tuples(
    st.just("record"),
    st.sampled_from(["fail", "fail", "ok", "release", "flush"]),
    st.sampled_from(["last", "last", "older", "stale"]),  # whose generation and token it reports
    st.sampled_from(["", "RetriableUpstreamError:503", "slow_call", "an error label with spaces"]),
    pending,
)
command = st.tuples(
    st.just("command"), st.sampled_from(["force_open", "force_close", "reset"]), st.text(max_size=8)
)
stats = st.tuples(st.just("stats"))
advance = st.tuples(st.just("advance"), st.sampled_from([0.05, 0.25, 0.5, 1, 3.3, 10, 45, 200]))
# Calls far more often than operators, as in production.
operations = st.lists(
    st.one_of(admit, admit, admit, record, record, record, advance, advance, stats, command), max_size=60
)


def apply(store: BreakerStore, admissions: list[Admission], op: tuple[Any, ...]) -> Any:
    kind = op[0]
    if kind == "admit":
        admissions.append(store.admit(op[1]))
        return admissions[-1]
    if kind == "record":
        _, outcome, which, error, buffered = op
        seen = {"last": admissions[-1:], "older": admissions[-2:-1]}.get(which, [])
        generation, token = (seen[0].generation, seen[0].token) if seen else (-1, "0-999")
        return store.record(outcome, generation, token, error, buffered)
    if kind == "command":
        return store.command(op[1], op[2])
    return store.stats()


def run_side_by_side(
    policy: BreakerPolicy,
    ops: list[tuple[Any, ...]],
    step: Callable[[BreakerStore, list[Admission], tuple[Any, ...]], Any],
    dumps: Sequence[str],
    budget: BudgetPolicy | None = None,
) -> None:
    """Every operation on a Redis store and an in-process one: the same answers, raw replies and keys."""
    client = redis.Redis.from_url(REDIS_URL)
    run = uuid.uuid4().hex
    prefix = f"sw-test-{run}:breaker:{{same}}"
    binding = BudgetBinding.for_host("shop.example", budget, f"sw-test-{run}") if budget else None
    clock = Clock()
    on_redis, in_process = ShimmedHost(client, clock), ShimmedHost(LocalRedis(), clock)
    stores = [BreakerStore("same", host, policy, prefix, binding) for host in (on_redis, in_process)]
    admissions: list[list[Admission]] = [[], []]
    try:
        for op in ops:
            if op[0] == "advance":
                clock.now += op[1]
                continue
            answers = [step(store, seen, op) for store, seen in zip(stores, admissions, strict=True)]
            assert answers[0] == answers[1], op
            assert on_redis.replies == in_process.replies
        for dump in dumps:
            kept = [host.register_script(dump)(stores[0].keys, []) for host in (on_redis, in_process)]
            assert kept[0] == kept[1]
    finally:
        client.delete(*stores[0].keys)
        client.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, ops=operations)
def test_same_replies_on_redis_and_in_process(policy: BreakerPolicy, ops: list[tuple[Any, ...]]) -> None:
    run_side_by_side(policy, ops, apply, [DUMP])


# -- with the host's request budget (KEYS[4]): its chunk runs on both hosts too ---------------------

budgets = st.builds(
    BudgetPolicy,
    ceiling=st.sampled_from([0.5, 2.0, 10.0, 50.0]),
    floor=st.sampled_from([0.1, 0.5]),
    burst=st.integers(1, 4),
    decrease=st.sampled_from([0.5, 0.75]),
    increase=st.sampled_from([0.2, 1.0]),
    max_wait=st.sampled_from([0.5, 5.0, 60.0]),
    pause_cap=st.sampled_from([1.0, 30.0]),
)
paced_admit = st.tuples(st.just("admit"), pending, st.integers(0, 5))
refuse = st.tuples(
    st.just("refuse"),
    st.sampled_from(["last", "last", "older", "stale"]),
    st.sampled_from([0.0, 0.5, 2, 90]),
    pending,
)
paced_operations = st.lists(
    st.one_of(paced_admit, paced_admit, refuse, refuse, record, advance, advance, stats, command), max_size=60
)
DUMP_BUDGET = "return redis.call('HGETALL', KEYS[4])"


def apply_paced(store: BreakerStore, admissions: list[Admission], op: tuple[Any, ...]) -> Any:
    if op[0] == "admit":
        admissions.append(store.admit(op[1], op[2]))
        return admissions[-1]
    if op[0] == "refuse":
        _, which, retry_after, buffered = op
        seen = {"last": admissions[-1:], "older": admissions[-2:-1]}.get(which, [])
        admission = (
            seen[0] if seen else Admission(True, BreakerState.CLOSED, -1, 0.0, "0-999", budget_epoch=-1)
        )
        return store.record_refusal(admission, "RateLimited:429", retry_after, buffered)
    return apply(store, admissions, op)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies, budget=budgets, ops=paced_operations)
def test_same_replies_with_a_request_budget(
    policy: BreakerPolicy, budget: BudgetPolicy, ops: list[tuple[Any, ...]]
) -> None:
    run_side_by_side(policy, ops, apply_paced, [DUMP, DUMP_BUDGET], budget)
