"""The circuit breaker a task wraps around each upstream call.

Protocol with the shared store (see scripts/*.lua), at most two round trips per guarded call:

* **Admission** ("may I call?") is one script. It refuses at once in OPEN / FORCED_OPEN (the
  fail-fast path: that one round trip only), moves OPEN to HALF_OPEN when the open period is over,
  and in HALF_OPEN hands out one of ``half_open_max_calls`` fleet-wide leases (permits).
* **Successes in CLOSED are buffered** in this process and carried by its next script call, so
  a healthy call costs one round trip. Each success carries the generation and the failure
  sequence number its admission saw. When applied it ends the consecutive-failure run only up to
  that sequence number: failures recorded after its admission stay counted, so a late success
  never wipes failures that came after it. A success of an older generation (the breaker changed
  state since) reaches only the totals: it cannot close or reset a newer generation.
  A success is buffered only if its admission saw no unanswered failure (the fleet's run was
  empty), because then it cannot change the consecutive count at all. If the run was not empty it
  is reported at once (a second round trip, only after recent failures), so the count of
  consecutive failures is exactly what immediate reporting would give.
* **Failures are reported at once** by the record script, which may trip the breaker; so are
  slow calls (they count as failures) and every outcome of a half-open probe.
* **Fencing**: every transition bumps the generation. An outcome admitted under an older
  generation, or holding a lease that was reclaimed, only reaches the totals.
* The last success of a process stays buffered until its next call; ``flush()`` pushes it (call it
  at the end of a task if the stats must be exact). Until then the window may be missing one
  success per process, which can only make the rate rule slightly stricter.

**The request budget** (optional, ``budget=``): admission also asks the host's budget for a slot in
the same script run, and the call sleeps until its slot (the time the script returned: no polling).
A refusal (``RateLimited``: a 429, a 503 with Retry-After) is reported to the budget, which lowers the
host's rate for the whole fleet and pauses it for a Retry-After; it counts as a breaker failure only
when the budget was already at its floor. Successes raise the rate, carried by the next admission.

No lock is held around the guarded call; the scripts serialise the decisions. If Redis cannot be
reached, the same scripts run in this process (``LocalRedis``, created on first need) against its own
keyspace, and Redis is tried again only after ``retry_interval`` seconds, so a dead Redis costs one
short timeout per interval, not per call. The budget degrades with it: each process then keeps its own
budget per host, at ``degraded_share`` of the ceiling (it cannot know how many others are calling).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar

import redis

from worker.breaker import protocol
from worker.breaker.buffer import SuccessBuffer
from worker.breaker.listeners import BreakerListener, operator_reason
from worker.breaker.local_redis import LocalRedis
from worker.breaker.policy import BreakerPolicy, is_slow
from worker.breaker.state import (
    NO_PENDING,
    Admission,
    BreakerState,
    BreakerStats,
    PendingSuccesses,
    Transition,
)
from worker.breaker.store import BreakerStore, BudgetBinding
from worker.infra.errors import BudgetPaused, CircuitOpenError, RateLimited, is_cancellation

logger = logging.getLogger("worker.breaker")

P = ParamSpec("P")
R = TypeVar("R")

SLOW_CALL = "slow_call"


def error_label(exc: BaseException) -> str:
    """The class name and status code: never the message, which may carry secrets."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}:{status}" if isinstance(status, int) else type(exc).__name__


class CircuitBreaker:
    """A fleet-wide breaker: ``call``, ``guard()`` or use it as a decorator.

    ``clock`` (epoch seconds) is the in-process store's ``TIME`` and drives call durations and the
    Redis retry interval; the shared state only ever uses Redis ``TIME``.
    """

    def __init__(
        self,
        name: str,
        redis_client: redis.Redis | None,
        policy: BreakerPolicy,
        *,
        listener: BreakerListener | None = None,
        clock: Callable[[], float] = time.time,
        key_prefix: str | None = None,
        retry_interval: float = 5.0,
        budget: BudgetBinding | None = None,
        degraded_share: float = 0.25,
        local_host: LocalRedis | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.policy = policy
        self.budget = budget
        self._listener = listener
        self._clock = clock
        self._sleep = sleep
        self._retry_interval = retry_interval
        self._key_prefix = key_prefix or f"syncworker:breaker:{{{name}}}"
        self._redis = (
            BreakerStore(name, redis_client, policy, self._key_prefix, budget)
            if redis_client is not None
            else None
        )
        # The in-process keyspace; shared by a process's breakers, so sources on one host share
        # its degraded budget as they share the fleet's.
        self._local_host = local_host
        self._degraded_budget = (
            BudgetBinding(budget.host, budget.key, budget.policy.degraded(degraded_share)) if budget else None
        )
        # Successes since the last admission, which raise the host's rate. A plain counter: a race
        # between page threads can lose one, which only makes the rate climb a little slower.
        self._paced_successes = 0
        # Holds the in-process store once created; setdefault publishes it atomically, so threads
        # racing to create it agree on one without a lock (which a fork could leave held).
        self._local: dict[str, BreakerStore] = {}
        self._buffer = SuccessBuffer(clock)
        self._degraded_until: float | None = None

    # -- guarding ----------------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if the breaker admits it; raises ``CircuitOpenError`` when refused."""
        # guard() spelled out: a generator context manager costs more than the rest of the path.
        store, admission = self._admit()
        started = self._clock()
        try:
            if admission.wait > 0:
                # Inside the try: a time limit firing while the call waits for its slot still gives a
                # probe's lease back.
                self._notify_wait(admission.wait)
                self._sleep(admission.wait)
                started = self._clock()
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failed(store, admission, started, exc)
            raise
        except BaseException:
            self._cancelled(store, admission)
            raise
        self._succeeded(store, admission, started)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return guarded

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Admit, run the body, report its outcome."""
        store, admission = self._admit()
        started = self._clock()
        try:
            if admission.wait > 0:
                self._notify_wait(admission.wait)
                self._sleep(admission.wait)
                started = self._clock()
            yield
        except Exception as exc:
            self._failed(store, admission, started, exc)
            raise
        except BaseException:
            self._cancelled(store, admission)
            raise
        self._succeeded(store, admission, started)

    @property
    def budget_host(self) -> str | None:
        """The host whose request budget this breaker's calls draw on (None: no budget)."""
        return self.budget.host if self.budget is not None else None

    # -- reading and operating ---------------------------------------------------------------------

    def stats(self) -> BreakerStats:
        """The shared stats, or this process's own (``degraded=True``) while Redis is away."""
        store = self._store()
        if store is not None:
            try:
                return store.stats()
            except redis.RedisError as exc:
                self._degrade(exc)
        return replace(self._local_store().stats(), degraded=self._redis is not None)

    def state(self) -> BreakerState:
        return self.stats().state

    def flush(self) -> None:
        """Push buffered successes to the shared store now (e.g. at the end of a task)."""
        store = self._store()
        if store is None:
            return
        try:
            store.record("flush", -1, None, "", self._buffer.take())
            self._recovered()
        except redis.RedisError as exc:
            self._degrade(exc)

    def force_open(self, actor: str) -> Transition:
        return self._command("force_open", actor)

    def force_close(self, actor: str) -> Transition:
        return self._command("force_close", actor)

    def reset(self, actor: str) -> Transition:
        return self._command("reset", actor)

    # -- internals ---------------------------------------------------------------------------------

    def _local_store(self) -> BreakerStore:
        """This process's own store: the same scripts, run in process, created on first need."""
        store = self._local.get("store")
        if store is None:
            host = self._local_host or LocalRedis(self._clock)
            created = BreakerStore(self.name, host, self.policy, self._key_prefix, self._degraded_budget)
            store = self._local.setdefault("store", created)
        return store

    def _store(self) -> BreakerStore | None:
        """Redis unless it failed less than ``retry_interval`` ago."""
        if self._redis is None:
            return None
        if self._degraded_until is not None and self._clock() < self._degraded_until:
            return None
        return self._redis

    def _admit(self) -> tuple[BreakerStore, Admission]:
        store = self._store()
        admission = None
        paced, self._paced_successes = self._paced_successes, 0
        if store is not None:
            try:
                admission = store.admit(self._buffer.take(), paced)
                self._recovered()
            except redis.RedisError as exc:
                self._degrade(exc)
        if store is None or admission is None:
            store = self._local_store()
            admission = store.admit(NO_PENDING, paced)
        self._notify(admission.transition)
        if admission.budget_event is not None:
            self._notify_budget(admission.budget_event, admission.budget_rate, 0.0)
        if admission.budget_refused:
            raise BudgetPaused(self.budget_host or self.name, admission.wait)
        if not admission.allowed:
            raise CircuitOpenError(self.name, admission.retry_after)
        return store, admission

    def _failed(self, store: BreakerStore, admission: Admission, started: float, exc: Exception) -> None:
        if is_cancellation(exc):
            # A time limit fired inside the call: it says nothing about the upstream either way.
            self._cancelled(store, admission)
        elif isinstance(exc, RateLimited) and self.budget is not None:
            self._refused(store, admission, exc)
        elif self.policy.counts_as_failure(exc):
            self._report(store, admission, "fail", error_label(exc))
        else:
            # The upstream answered (a 4xx, a record that failed validation): it is healthy.
            self._succeeded(store, admission, started)

    def _cancelled(self, store: BreakerStore, admission: Admission) -> None:
        # Cancelled (shutdown, interrupt): no outcome, but give a probe lease back.
        if admission.token:
            self._report(store, admission, "release", "")

    def _refused(self, store: BreakerStore, admission: Admission, exc: RateLimited) -> None:
        retry_after = exc.retry_after or 0.0
        pending = NO_PENDING if store is not self._redis else self._buffer.take()
        try:
            tr, head = store.record_refusal(admission, error_label(exc), retry_after, pending)
        except redis.RedisError as degraded:
            self._degrade(degraded)
            # The fleet's budget missed this refusal; this process's own budget learns it instead.
            local = self._local_store()
            tr, head = local.record_refusal(admission, error_label(exc), retry_after, NO_PENDING)
        self._notify(tr)
        event = protocol.budget_event(head)
        if event is not None:
            self._notify_budget(event, float(head["rate"]), retry_after)

    def _succeeded(self, store: BreakerStore, admission: Admission, started: float) -> None:
        if self.budget is not None:
            self._paced_successes += 1
        if is_slow(self.policy, self._clock() - started):
            self._report(store, admission, "fail", SLOW_CALL)
        elif admission.token or admission.state != BreakerState.CLOSED:
            self._report(store, admission, "ok", "")
        elif store is not self._redis:
            # In process a round trip is free: apply the success at once, with the same rule.
            one = PendingSuccesses(admission.generation, 1, admission.failure_seq)
            self._notify(store.record("flush", -1, None, "", one))
        else:
            self._buffer.add(admission)
            if not admission.clean:
                # It ends a run of failures: other workers must see that before their next one.
                self.flush()

    def _report(self, store: BreakerStore, admission: Admission, kind: str, error: str) -> None:
        if store is not self._redis:
            tr = store.record(kind, admission.generation, admission.token, error, NO_PENDING)
        else:
            try:
                tr = store.record(kind, admission.generation, admission.token, error, self._buffer.take())
            except redis.RedisError as exc:
                self._degrade(exc)
                # The shared store missed this outcome; the local breaker counts it instead.
                if kind != "fail":
                    return
                local = self._local_store()
                tr = local.record(kind, local.stats().generation, None, error, NO_PENDING)
        self._notify(tr)

    def _command(self, op: str, actor: str) -> Transition:
        # Operators must see a failure rather than silently change one process's local state.
        store = self._redis or self._local_store()
        tr = store.command(op, operator_reason(actor))
        self._notify(tr)
        return tr

    def _degrade(self, exc: redis.RedisError) -> None:
        first = self._degraded_until is None
        self._degraded_until = self._clock() + self._retry_interval
        if first:
            logger.warning(
                "breaker store unreachable; using in-process breaker",
                extra={"breaker": self.name, "error": type(exc).__name__},
            )
            self._store_change(True, type(exc).__name__)

    def _recovered(self) -> None:
        if self._degraded_until is not None:
            self._degraded_until = None
            self._store_change(False, "redis answered")

    def _tell(self, method: str, *args: Any) -> None:
        """Call the listener's ``method`` if it has one; a broken listener never fails a guarded call."""
        hook = getattr(self._listener, method, None)
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            logger.exception("breaker listener failed", extra={"breaker": self.name})

    def _store_change(self, degraded: bool, detail: str) -> None:
        self._tell("on_store_change", self.name, degraded, detail)

    def _notify_wait(self, seconds: float) -> None:
        if self.budget is not None:
            self._tell("on_budget_wait", self.budget.host, seconds)

    def _notify_budget(self, events: str, rate: float, retry_after: float) -> None:
        if self.budget is None:
            return
        detail = {"breaker": self.name, "rate": rate, "ceiling": self.budget.policy.ceiling}
        if retry_after:
            detail["retry_after"] = retry_after
        for event in events.split(","):
            self._tell("on_budget", self.budget.host, event, dict(detail))

    def _notify(self, tr: Transition | None) -> None:
        if tr is not None:
            self._tell("on_transition", self.name, tr.old, tr.new, tr.reason, tr.stats.as_dict())
