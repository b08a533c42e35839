"""The in-process store: the same rules as the Lua scripts, for one process.

Used when Redis cannot be reached (degraded mode) and for tests. Time comes from the injected
clock. It keeps the data layout of the scripts on purpose, so the two can be read side by side.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from worker.breaker.policy import WINDOW_BUCKETS, BreakerPolicy, open_duration, should_trip
from worker.breaker.state import (
    Admission,
    BreakerState,
    BreakerStats,
    PendingSuccesses,
    Transition,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class MemoryBreakerStore:
    """One process's breaker state behind a lock (held for a decision, never around a call)."""

    def __init__(self, name: str, policy: BreakerPolicy, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._gen = 0
        self._fseq = 0
        self._okseq = 0
        self._cs = 0
        self._fprobes = 0
        self._opened_at: float | None = None
        self._next_at: float | None = None
        self._permits: dict[str, float] = {}
        self._ptok = 0
        self._window: dict[int, list[int]] = {}
        self._calls = self._fails = self._oks = self._rejected = 0
        self._last_fail_at: float | None = None
        self._last_fail_err: str | None = None
        self._last_ok_at: float | None = None

    # -- the operations of a store ---------------------------------------------------------------

    def admit(self, pending: PendingSuccesses) -> Admission:
        with self._lock:
            now = self._clock()
            self._apply_pending(pending, now)
            if self._state in (CLOSED, BreakerState.FORCED_CLOSED):
                return self._reply(True, 0.0)
            if self._state == BreakerState.FORCED_OPEN:
                self._rejected += 1
                return self._reply(False, self.policy.open_seconds)
            tr = None
            if self._state == OPEN:
                wait = (self._next_at or now) - now
                if wait > 0:
                    self._rejected += 1
                    return self._reply(False, wait)
                tr = self._transition(HALF_OPEN, "open_period_elapsed", now)
            self._reclaim(now)
            if len(self._permits) < self.policy.half_open_max_calls:
                self._ptok += 1
                token = f"{self._gen}-{self._ptok}"
                self._permits[token] = now + self.policy.permit_timeout_seconds
                return self._reply(True, 0.0, token, tr)
            self._rejected += 1
            wait = min(self.policy.open_seconds, min(self._permits.values()) - now)
            return self._reply(False, wait, None, tr)

    def record(
        self, kind: str, generation: int, token: str | None, error: str, pending: PendingSuccesses
    ) -> Transition | None:
        with self._lock:
            now = self._clock()
            self._apply_pending(pending, now)
            if kind == "flush":
                return None
            if kind == "release":
                self._permits.pop(token or "", None)
                return None
            self._calls += 1
            if kind == "fail":
                self._fails += 1
                self._last_fail_at, self._last_fail_err = now, error
            else:
                self._oks += 1
                self._last_ok_at = now
            if generation != self._gen:
                return None
            if self._state == CLOSED and kind == "fail":
                self._fseq += 1
                self._window_add(now, 1, 1)
                calls, fails = self._window_read(now)
                reason = should_trip(self.policy, self._fseq - self._okseq, calls, fails)
                return self._transition(OPEN, reason, now) if reason else None
            if self._state == HALF_OPEN and self._permits.pop(token or "", None) is not None:
                if kind == "fail":
                    self._fprobes += 1
                    return self._transition(OPEN, "probe_failed", now)
                self._cs += 1
                if self._cs >= self.policy.success_threshold:
                    return self._transition(CLOSED, "probes_succeeded", now)
            return None

    def command(self, op: str, reason: str) -> Transition:
        target = {
            "force_open": BreakerState.FORCED_OPEN,
            "force_close": BreakerState.FORCED_CLOSED,
            "reset": CLOSED,
        }[op]
        with self._lock:
            if op == "reset":
                self._fprobes = 0
            return self._transition(target, reason, self._clock())

    def stats(self) -> BreakerStats:
        with self._lock:
            return self._stats(self._clock())

    # -- the rules ---------------------------------------------------------------------------------

    def _apply_pending(self, pending: PendingSuccesses, now: float) -> None:
        total = pending.count + pending.stale_count
        self._oks += total
        self._calls += total
        if pending.count == 0:
            return
        last_ok = now - pending.age_seconds
        if self._last_ok_at is None or last_ok > self._last_ok_at:
            self._last_ok_at = last_ok
        if pending.generation != self._gen or self._state != CLOSED:
            return
        self._okseq = max(self._okseq, pending.max_failure_seq)
        self._window_add(now, pending.count, 0)

    def _transition(self, new: BreakerState, reason: str, now: float) -> Transition:
        old = self._state
        self._state, self._gen, self._cs = new, self._gen + 1, 0
        self._permits.clear()
        if new == OPEN:
            self._opened_at = now
            self._next_at = now + open_duration(self.policy, self._fprobes)
        elif new == BreakerState.FORCED_OPEN:
            self._opened_at, self._next_at = now, None
        elif new in (CLOSED, BreakerState.FORCED_CLOSED):
            self._fseq = self._okseq = self._fprobes = 0
            self._opened_at = self._next_at = None
            self._window.clear()
        return Transition(old, new, reason, self._stats(now))

    def _reclaim(self, now: float) -> None:
        for token in [t for t, expiry in self._permits.items() if expiry <= now]:
            del self._permits[token]

    def _bucket(self, now: float) -> int:
        return math.floor(now / self.policy.bucket_seconds)

    def _window_add(self, now: float, calls: int, fails: int) -> None:
        bucket = self._window.setdefault(self._bucket(now), [0, 0])
        bucket[0] += calls
        bucket[1] += fails
        self._window_read(now)

    def _window_read(self, now: float) -> tuple[int, int]:
        lo = self._bucket(now) - WINDOW_BUCKETS + 1
        for idx in [i for i in self._window if i < lo]:
            del self._window[idx]
        return sum(b[0] for b in self._window.values()), sum(b[1] for b in self._window.values())

    def _reply(
        self, allowed: bool, retry_after: float, token: str | None = None, tr: Transition | None = None
    ) -> Admission:
        clean = self._fseq == self._okseq
        return Admission(allowed, self._state, self._gen, retry_after, token, self._fseq, tr, clean)

    def _stats(self, now: float) -> BreakerStats:
        self._reclaim(now)
        calls, fails = self._window_read(now)
        return BreakerStats(
            name=self.name,
            state=self._state,
            generation=self._gen,
            consecutive_failures=self._fseq - self._okseq,
            consecutive_successes=self._cs,
            window_calls=calls,
            window_failures=fails,
            failure_rate=fails / calls if calls else 0.0,
            total_calls=self._calls,
            total_failures=self._fails,
            total_successes=self._oks,
            total_rejected=self._rejected,
            last_failure_at=self._last_fail_at,
            last_failure_error=self._last_fail_err,
            last_success_at=self._last_ok_at,
            opened_at=self._opened_at,
            next_attempt_at=self._next_at,
            permits_in_use=len(self._permits),
            failed_probes=self._fprobes,
        )
