"""Random sequences of calls, clock moves and operator commands against a reference model.

Two workers share one fakeredis, so buffered successes and generations are exercised; a second
machine runs the same rules on the in-process store a worker falls back to (nothing buffered). The
model is deliberately naive: one timeline, plain counters, the window as a list of dated entries,
and the rules written out here, independently of the scripts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import fakeredis
import pytest
from breaker_helpers import FakeClock
from fakeredis.commands_mixins import server_mixin
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from worker.breaker import BreakerPolicy, CircuitBreaker
from worker.infra.errors import CircuitOpenError, FatalUpstreamError, RetriableUpstreamError

POLICY = BreakerPolicy(
    failure_threshold=3,
    failure_rate_threshold=0.5,
    window_seconds=10,  # buckets of 0.5 s: exact in binary, like every clock step below
    minimum_calls=6,
    slow_call_seconds=2,
    open_seconds=4,
    open_backoff_multiplier=2,
    open_max_seconds=16,
    half_open_max_calls=1,
    success_threshold=2,
)
BUCKET = POLICY.window_seconds / 20


@dataclass
class Model:
    """The policy, stated as simply as possible for one sequential timeline."""

    now: float
    state: str = "closed"
    gen: int = 0
    run: int = 0  # consecutive failures
    cs: int = 0
    probes_failed: int = 0
    next_at: float = 0.0
    window: list[tuple[float, int, int]] = field(default_factory=list)
    calls: int = 0
    fails: int = 0
    oks: int = 0
    rejected: int = 0
    pending: dict[int, list[int]] = field(default_factory=lambda: {0: [], 1: []})
    buffers: bool = True  # False: every success reaches the store at once (the in-process store)

    def window_counts(self) -> tuple[int, int]:
        lo = math.floor(self.now / BUCKET) - 19
        live = [(c, f) for t, c, f in self.window if math.floor(t / BUCKET) >= lo]
        return sum(c for c, _ in live), sum(f for _, f in live)

    def trips(self) -> bool:
        """A failure in CLOSED trips: three in a row, or half the window once it holds six calls."""
        calls, fails = self.window_counts()
        return self.run >= 3 or (calls >= 6 and fails >= 0.5 * calls)

    def move(self, new: str) -> None:
        self.state, self.gen, self.cs = new, self.gen + 1, 0
        if new == "open":
            # Open for 4 s, doubled by each failed probe, at most 16 s.
            self.next_at = self.now + min(4 * 2**self.probes_failed, 16)
        if new in ("closed", "forced_closed"):
            self.run = self.probes_failed = 0
            self.window = []

    def apply_pending(self, w: int) -> None:
        for gen in self.pending[w]:
            self.oks += 1
            self.calls += 1
            if gen == self.gen and self.state == "closed":
                self.window.append((self.now, 1, 0))
        self.pending[w] = []

    def admit(self, w: int) -> bool:
        self.apply_pending(w)
        if self.state == "open" and self.now >= self.next_at:
            self.move("half_open")
        if self.state in ("open", "forced_open"):
            self.rejected += 1
            return False
        return True

    def outcome(self, w: int, ok: bool) -> None:
        if self.buffers and ok and self.state == "closed" and self.run == 0:
            self.pending[w].append(self.gen)  # buffered until this worker's next round trip
            return
        self.apply_pending(w)
        self.calls += 1
        if ok:
            self.oks += 1
        else:
            self.fails += 1
        if self.state == "closed" and ok:
            self.run = 0
            self.window.append((self.now, 1, 0))
        elif self.state == "closed":
            self.run += 1
            self.window.append((self.now, 1, 1))
            if self.trips():
                self.move("open")
        elif self.state == "half_open" and not ok:
            self.probes_failed += 1
            self.move("open")
        elif self.state == "half_open":
            self.cs += 1
            if self.cs >= 2:
                self.move("closed")


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.patch = pytest.MonkeyPatch()
        self.patch.setattr(server_mixin, "time", SimpleNamespace(time=self.clock))
        self.workers = self.make_workers()
        self.model = Model(now=self.clock.now, buffers=self.workers[0] is not self.workers[1])

    def make_workers(self) -> list[CircuitBreaker]:
        server = fakeredis.FakeServer()
        return [
            CircuitBreaker("m", fakeredis.FakeRedis(server=server), POLICY, clock=self.clock)
            for _ in range(2)
        ]

    def teardown(self) -> None:
        self.patch.undo()

    def _call(self, w: int, outcome: str) -> None:
        allowed = self.model.admit(w)

        def body() -> None:
            if outcome == "slow":
                self.clock.advance(2.5)
                self.model.now = self.clock.now
            elif outcome == "fail":
                raise RetriableUpstreamError("503", status_code=503)
            elif outcome == "client_error":
                raise FatalUpstreamError("404", status_code=404)

        try:
            self.workers[w].call(body)
        except CircuitOpenError:
            assert not allowed
            return
        except (RetriableUpstreamError, FatalUpstreamError):
            pass
        assert allowed
        self.model.outcome(w, ok=outcome in ("ok", "client_error"))

    @rule(w=st.integers(0, 1), outcome=st.sampled_from(["ok", "fail", "slow", "client_error"]))
    def call(self, w: int, outcome: str) -> None:
        self._call(w, outcome)

    @rule(quarters=st.integers(1, 40))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters / 4)
        self.model.now = self.clock.now

    @rule(w=st.integers(0, 1), op=st.sampled_from(["force_open", "force_close", "reset"]))
    def operator(self, w: int, op: str) -> None:
        getattr(self.workers[w], op)("tester")
        if op == "reset":
            self.model.probes_failed = 0
        self.model.move({"force_open": "forced_open", "force_close": "forced_closed"}.get(op, "closed"))

    @rule(w=st.integers(0, 1))
    def flush(self, w: int) -> None:
        self.workers[w].flush()
        self.model.apply_pending(w)

    @invariant()
    def agrees_with_model(self) -> None:
        s = self.workers[0].stats()
        m = self.model
        calls, fails = m.window_counts() if m.state == "closed" else (s.window_calls, s.window_failures)
        assert (str(s.state), s.generation) == (m.state, m.gen)
        assert (s.total_calls, s.total_failures, s.total_successes, s.total_rejected) == (
            m.calls,
            m.fails,
            m.oks,
            m.rejected,
        )
        assert (s.window_calls, s.window_failures) == (calls, fails)
        assert s.consecutive_successes == m.cs
        assert s.failed_probes == m.probes_failed
        if m.state == "closed":
            assert s.consecutive_failures == m.run


class LocalBreakerMachine(BreakerMachine):
    """The store a process falls back to without Redis: the same scripts, run in process."""

    def make_workers(self) -> list[CircuitBreaker]:
        one = CircuitBreaker("m", None, POLICY, clock=self.clock)
        return [one, one]


MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = MACHINE_SETTINGS
TestLocalBreakerMachine = LocalBreakerMachine.TestCase
TestLocalBreakerMachine.settings = MACHINE_SETTINGS
