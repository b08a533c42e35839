"""Worker-process bodies for the multi-process tests (top level, so any start method works)."""

from __future__ import annotations

import time
from typing import Any

import redis

from worker.breaker import BreakerPolicy, CircuitBreaker
from worker.breaker.state import BreakerState
from worker.infra.errors import CircuitOpenError, RetriableUpstreamError

REDIS_URL = "redis://127.0.0.1:6379/0"


class QueueListener:
    """Sends the transitions this process caused to the parent."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def on_transition(
        self, name: str, old: BreakerState, new: BreakerState, reason: str, stats: dict[str, Any]
    ) -> None:
        self.queue.put((str(old), str(new), reason))

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None:
        self.queue.put(("store", "degraded" if degraded else "recovered", detail))


class RecordingEventLog:
    """An in-memory stand-in for worker.infra.eventlog.EventLog."""

    def __init__(self) -> None:
        self.types: list[str] = []

    def record(self, event_type: str, **_: Any) -> None:
        self.types.append(event_type)


def make(prefix: str, policy: dict[str, Any], events: Any = None) -> CircuitBreaker:
    return CircuitBreaker(
        "fleet",
        redis.Redis.from_url(REDIS_URL),
        BreakerPolicy(**policy),
        listener=QueueListener(events) if events is not None else None,
        key_prefix=f"{prefix}:breaker:{{fleet}}",
    )


def admitted_states(breaker: CircuitBreaker) -> list[str]:
    """Record the state each admission was granted in (test instrumentation)."""
    seen: list[str] = []
    admit = breaker._admit

    def recording() -> Any:
        store, admission = admit()
        seen.append(str(admission.state))
        return store, admission

    breaker._admit = recording  # type: ignore[method-assign]
    return seen


def fail() -> None:
    raise RetriableUpstreamError("503", status_code=503)


def hammer(prefix: str, policy: dict[str, Any], seconds: float, events: Any, out: Any) -> None:
    """Call an always-failing upstream for ``seconds``; report where each call was admitted."""
    breaker = make(prefix, policy, events)
    seen = admitted_states(breaker)
    refused = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            breaker.call(fail)
        except RetriableUpstreamError:
            pass
        except CircuitOpenError as exc:
            refused += 1
            time.sleep(min(exc.retry_after_seconds, 0.01))
    out.put((seen.count("closed"), seen.count("half_open"), refused))


def fail_until_refused(prefix: str, policy: dict[str, Any], barrier: Any, out: Any) -> None:
    breaker = make(prefix, policy)
    barrier.wait()
    reached = 0
    while True:
        try:
            reached += 1
            breaker.call(fail)
        except RetriableUpstreamError:
            pass
        except CircuitOpenError:
            out.put(reached - 1)
            return


def probe_once(
    prefix: str, policy: dict[str, Any], barrier: Any, refused: Any, expected: int, out: Any
) -> None:
    """One attempt after the open period; a granted probe waits until every other was refused."""
    breaker = make(prefix, policy)
    barrier.wait()

    def probe() -> None:
        give_up = time.monotonic() + 20
        while refused.value < expected and time.monotonic() < give_up:
            time.sleep(0.005)

    try:
        breaker.call(probe)
        out.put("probe")
    except CircuitOpenError:
        with refused.get_lock():
            refused.value += 1
        out.put("refused")


def mixed_calls(prefix: str, policy: dict[str, Any], calls: int, events: Any, out: Any) -> None:
    """Four failures then a success, repeated: 80% failures, never a long run from one process."""
    breaker = make(prefix, policy, events)
    for i in range(calls):
        try:
            if i % 5 == 4:
                breaker.call(lambda: None)
            else:
                breaker.call(fail)
        except (RetriableUpstreamError, CircuitOpenError):
            pass
    breaker.flush()
    out.put(i)


def hold_permit(prefix: str, policy: dict[str, Any], ready: Any) -> None:
    breaker = make(prefix, policy)

    def hang() -> None:
        ready.set()
        time.sleep(60)

    breaker.call(hang)


def observe(prefix: str, policy: dict[str, Any], barrier: Any, out: Any) -> None:
    """A process that only looks, then tries one call after the others tripped the breaker."""
    breaker = make(prefix, policy)
    barrier.wait()
    for _ in range(20):
        breaker.stats()
    barrier.wait()
    try:
        breaker.call(lambda: None)
        out.put("called")
    except CircuitOpenError:
        out.put("refused")
