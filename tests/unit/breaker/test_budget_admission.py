"""The request budget, asked with the breaker in one script run: slots, cuts, pauses, the floor.

fakeredis (its TIME driven by the fake clock) stands for the fleet's Redis; two breakers built on it
are two workers. The breaker sleeps through the fake clock, so a slot's wait is time that passes.
"""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from breaker_helpers import FakeClock, RecordingEventLog, RecordingListener
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.breaker import BreakerPolicy, CircuitBreaker
from worker.breaker.listeners import EventLogListener
from worker.breaker.local_redis import LocalRedis
from worker.breaker.store import BudgetBinding
from worker.budget import BudgetPolicy, read_budget
from worker.infra.errors import BudgetPaused, CircuitOpenError, RateLimited, RetriableUpstreamError

HOST = "shop.example"
PREFIX = "sw"
BUDGET = BudgetPolicy(ceiling=10, floor=1, burst=2, decrease=0.5, increase=1, max_wait=30, pause_cap=60)


class BudgetRecorder(RecordingListener):
    def __init__(self) -> None:
        super().__init__()
        self.budget_events: list[tuple[str, str, dict[str, Any]]] = []

    def on_budget(self, host: str, event: str, detail: dict[str, Any]) -> None:
        self.budget_events.append((host, event, detail))

    @property
    def budget_names(self) -> list[str]:
        return [event for _, event, _ in self.budget_events]


class WaitRecorder:
    def __init__(self) -> None:
        self.waits: list[tuple[str, float]] = []

    def on_budget_wait(self, host: str, seconds: float) -> None:
        self.waits.append((host, seconds))


class Sleeper:
    """The breaker's sleep: records each wait and lets the fake time pass."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def make(
    clock: FakeClock,
    server: fakeredis.FakeServer | None,
    *,
    budget: BudgetPolicy = BUDGET,
    listener: Any = None,
    name: str = "woocommerce:a",
    **breaker: Any,
) -> tuple[CircuitBreaker, Sleeper]:
    sleeper = Sleeper(clock)
    client = fakeredis.FakeRedis(server=server) if server is not None else None
    b = CircuitBreaker(
        name,
        client,
        BreakerPolicy(**breaker),
        listener=listener,
        clock=clock,
        key_prefix=f"{PREFIX}:breaker:{{{name}}}",
        budget=BudgetBinding.for_host(HOST, budget, PREFIX),
        degraded_share=0.5,
        local_host=LocalRedis(clock),
        sleep=sleeper,
    )
    return b, sleeper


def refuse(retry_after: float | None = None) -> None:
    raise RateLimited("host answered 429", status_code=429, retry_after=retry_after)


def ok() -> str:
    return "ok"


def test_calls_are_spaced_at_the_ceiling_after_the_burst(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    b, sleeper = make(clock, server)
    for _ in range(6):
        b.call(ok)
    # burst 2 go at once, then one every 1/10 s: the waits are exactly the spacing.
    assert sleeper.waits == pytest.approx([0.1, 0.1, 0.1, 0.1], abs=1e-5)


def test_every_wait_for_a_slot_is_reported_to_the_listener(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    """What the metrics' budget-wait histogram is fed: one observation per call that waited."""
    recorder = WaitRecorder()
    b, sleeper = make(clock, server, listener=recorder)
    for _ in range(5):
        b.call(ok)
    assert recorder.waits == [(HOST, w) for w in sleeper.waits] and len(recorder.waits) == 3


def test_one_budget_for_every_source_on_the_host(clock: FakeClock, server: fakeredis.FakeServer) -> None:
    a, _ = make(clock, server, name="woocommerce:a")
    b, sleeper_b = make(clock, server, name="woocommerce:b")
    a.call(ok)
    a.call(ok)
    b.call(ok)  # the burst is spent by a's calls: b waits its turn
    assert sleeper_b.waits == pytest.approx([0.1], abs=1e-5)


def test_a_refusal_cuts_the_rate_once_for_the_whole_fleet(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    listener = BudgetRecorder()
    a, _ = make(clock, server, listener=listener)
    b, _ = make(clock, server, name="woocommerce:b", listener=listener)
    # Two calls admitted before either answer came back (two workers' pages in flight), both refused.
    with pytest.raises(RateLimited), a.guard(), b.guard():
        refuse()
    stats = read_budget(fakeredis.FakeRedis(server=server), PREFIX, HOST, 10)
    assert stats.rate == pytest.approx(5.0)  # cut once (x0.5), not twice: b's call was sent at the old rate
    assert (stats.throttled, stats.cuts) == (2, 1)
    assert listener.budget_names == ["lowered"]
    # The host answered: no breaker failure while the budget can still slow down.
    assert a.stats().consecutive_failures == 0 and b.stats().total_failures == 0


def test_refusals_within_a_second_of_a_cut_do_not_cut_again(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    b, _ = make(clock, server)
    for _ in range(5):  # each admitted after the previous cut, but the new rate has had no time to show
        with pytest.raises(RateLimited):
            b.call(refuse)
    stats = read_budget(fakeredis.FakeRedis(server=server), PREFIX, HOST, 10)
    assert (stats.cuts, stats.throttled, stats.rate) == (1, 5, pytest.approx(5.0))
    clock.advance(1.0)
    with pytest.raises(RateLimited):
        b.call(refuse)
    assert read_budget(fakeredis.FakeRedis(server=server), PREFIX, HOST, 10).cuts == 2


def test_a_refusal_of_a_call_sent_before_the_cut_does_not_cut_again_later(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    """Epoch fencing, apart from the one-a-second spacing: a slow answer to an old call comes late."""
    a, _ = make(clock, server)
    b, _ = make(clock, server, name="woocommerce:b")
    with pytest.raises(RateLimited), a.guard():  # a's call is admitted before the cut...
        with pytest.raises(RateLimited), b.guard():
            refuse()  # ...b's refusal cuts
        clock.advance(2.0)  # a's answer arrives two seconds later, refused too
        refuse()
    stats = read_budget(fakeredis.FakeRedis(server=server), PREFIX, HOST, 10)
    assert (stats.cuts, stats.throttled) == (1, 2)


def test_calls_in_flight_when_the_floor_is_reached_do_not_count_against_the_breaker(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    b, _ = make(
        clock, server, budget=BUDGET.__class__(**{**BUDGET.__dict__, "ceiling": 1.2}), failure_threshold=2
    )
    # Three calls admitted at 1.2/s, all refused: the first takes the rate to the floor (1), the other
    # two were sent at the old rate and are not the host refusing the lowest rate.
    with pytest.raises(RateLimited), b.guard(), b.guard(), b.guard():
        refuse()
    assert b.stats().total_failures == 0 and b.state() == "closed"
    clock.advance(1.0)
    for _ in range(2):  # now admitted at the floor, and still refused: that counts
        with pytest.raises(RateLimited):
            b.call(refuse)
    assert b.state() == "open"


def test_successes_raise_the_rate_back_to_the_ceiling(clock: FakeClock, server: fakeredis.FakeServer) -> None:
    listener = BudgetRecorder()
    b, _ = make(clock, server, listener=listener)
    with pytest.raises(RateLimited):
        b.call(refuse)
    for _ in range(60):
        b.call(ok)
    stats = read_budget(fakeredis.FakeRedis(server=server), PREFIX, HOST, 10)
    assert stats.rate == pytest.approx(10.0)
    assert listener.budget_names == ["lowered", "restored"]


def test_retry_after_pauses_every_caller_until_it_passes(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    a, _ = make(clock, server)
    b, sleeper_b = make(clock, server, name="woocommerce:b")
    refused_at = clock()
    with pytest.raises(RateLimited):
        a.call(refuse, 3)
    b.call(ok)
    assert clock() >= refused_at + 3 - 1e-6  # b slept until the pause was over
    assert sleeper_b.waits[0] == pytest.approx(3.0, abs=1e-5)


def test_a_pause_longer_than_a_call_may_wait_hands_back(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    b, sleeper = make(clock, server)
    with pytest.raises(RateLimited):
        b.call(refuse, 45)  # longer than max_wait (30)
    with pytest.raises(BudgetPaused) as refused:
        b.call(ok)
    assert refused.value.retry_after_seconds == pytest.approx(45, abs=1e-3)
    assert isinstance(refused.value, CircuitOpenError)  # handled like an open breaker: the run hands back
    assert sleeper.waits == []
    assert b.stats().total_rejected == 0  # not the breaker's refusal


def test_refusals_count_against_the_breaker_only_at_the_floor(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    listener = BudgetRecorder()
    b, _ = make(clock, server, listener=listener, failure_threshold=3)
    outcomes = []
    for _ in range(12):
        clock.advance(1.0)  # one cut a second at most: each refusal here comes a second apart
        try:
            b.call(refuse)
        except RateLimited:
            outcomes.append("refused")
        except CircuitOpenError:
            outcomes.append("open")
            break
    # 10 -> 5 -> 2.5 -> 1.25 -> 1 (floor): four cuts absorbed; then three refusals at the floor trip it.
    assert outcomes == ["refused"] * 7 + ["open"]
    assert listener.moves == [("closed", "open")]
    assert "lowered" in listener.budget_names


def test_a_ceiling_set_by_an_operator_takes_effect_on_the_next_call(
    clock: FakeClock, server: fakeredis.FakeServer
) -> None:
    from worker.budget import set_ceiling

    b, _ = make(clock, server)
    b.call(ok)
    set_ceiling(fakeredis.FakeRedis(server=server), PREFIX, HOST, 2.0)
    started = clock()
    for _ in range(7):
        b.call(ok)
    # At the configured 10/s these would take 0.5 s; at 2/s, past the burst of 2, at least 2.5 s.
    assert clock() - started >= 2.5 - 1e-6


def test_without_redis_each_process_keeps_a_share_of_the_ceiling(clock: FakeClock) -> None:
    b, sleeper = make(clock, None)  # no Redis at all: the in-process budget, at degraded_share 0.5
    for _ in range(4):
        b.call(ok)
    assert sleeper.waits == pytest.approx([0.2, 0.2], abs=1e-5)


def test_budget_events_reach_the_event_log(clock: FakeClock, server: fakeredis.FakeServer) -> None:
    log = RecordingEventLog()
    b, _ = make(clock, server, listener=EventLogListener(log))
    with pytest.raises(RateLimited):
        b.call(refuse, 2)
    assert log.types == ["budget.lowered", "budget.paused"]
    assert log.events[0]["aggregate_id"] == HOST
    assert log.events[0]["payload"]["rate"] == pytest.approx(5.0)


def test_other_failures_are_still_the_breakers(clock: FakeClock, server: fakeredis.FakeServer) -> None:
    b, _ = make(clock, server)

    def down() -> None:
        raise RetriableUpstreamError("503 without Retry-After", status_code=503)

    with pytest.raises(RetriableUpstreamError):
        b.call(down)
    assert b.stats().consecutive_failures == 1
    assert read_budget(fakeredis.FakeRedis(server=server), PREFIX, HOST, 10).cuts == 0


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=60),
    burst=st.integers(min_value=1, max_value=4),
    ceiling=st.sampled_from([2.0, 5.0, 10.0, 40.0]),
)
def test_no_window_ever_gets_more_slots_than_the_bucket_allows(
    gaps: list[float], burst: int, ceiling: float
) -> None:
    """GCRA's promise, for any arrival pattern: in any window of length w at most burst + rate * w slots."""
    clock = FakeClock()
    policy = BudgetPolicy(ceiling=ceiling, floor=1, burst=burst, max_wait=1e9, pause_cap=60)
    host = LocalRedis(clock)
    b = CircuitBreaker(
        "woocommerce:a",
        host,  # type: ignore[arg-type]  # the same scripts, on the in-process host
        BreakerPolicy(),
        clock=clock,
        budget=BudgetBinding.for_host(HOST, policy, PREFIX),
        sleep=lambda s: None,  # callers arrive on their own schedule; slots are what is checked
    )
    slots = []
    for gap in gaps:
        clock.advance(gap)
        store, admission = b._admit()  # the admission itself: its slot, before any sleep
        slots.append(admission.slot_at)
        assert admission.slot_at >= clock() - 1e-6
        b._succeeded(store, admission, clock())
    slots.sort()
    for i in range(len(slots)):
        for j in range(i, len(slots)):
            # Slots are kept to the microsecond: allow that much rounding on each end.
            assert j - i + 1 <= burst + ceiling * (slots[j] - slots[i] + 2e-6) + 1e-9
