"""Who hears about transitions: the event log, the logs, or a test recorder.

A listener is told about a transition only when *its* caller's script call caused it, so one
transition becomes one event for the whole fleet. Listeners must not raise; the breaker also
guards against it, since a broken listener must never fail a guarded call.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from worker.breaker.state import BreakerState

logger = logging.getLogger("worker.breaker")

OPERATOR_PREFIX = "operator:"


class EventLogLike(Protocol):
    """The part of ``worker.infra.eventlog.EventLog`` the breaker uses (imported lazily elsewhere)."""

    def record(
        self,
        event_type: str,
        *,
        aggregate_id: str | None = None,
        correlation_id: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None: ...


class BreakerListener(Protocol):
    """Receives state changes and the store going away (degraded) or coming back."""

    def on_transition(
        self,
        name: str,
        old: BreakerState,
        new: BreakerState,
        reason: str,
        stats: dict[str, Any],
    ) -> None: ...

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None: ...


class BudgetListener(Protocol):
    """Optionally also hears a host's request budget cross a threshold: 'lowered' (it left its
    ceiling, halved again, or reached its floor), 'restored' (back at the ceiling) or 'paused'
    (a Retry-After started a pause). Told once, by the process whose script run crossed it."""

    def on_budget(self, host: str, event: str, detail: dict[str, Any]) -> None: ...

    def on_budget_wait(self, host: str, seconds: float) -> None:
        """A call is about to sleep this long for its slot (only calls that wait)."""


def operator_reason(actor: str) -> str:
    """The reason recorded for a manual command; the actor is kept for the audit trail."""
    return f"{OPERATOR_PREFIX}{actor}"


def event_type_for(new: BreakerState, reason: str) -> str:
    """``breaker.<what happened>`` for a transition; an operator's move to CLOSED is a reset."""
    if new == BreakerState.CLOSED and reason.startswith(OPERATOR_PREFIX):
        return "breaker.reset"
    return {
        BreakerState.OPEN: "breaker.opened",
        BreakerState.HALF_OPEN: "breaker.half_opened",
        BreakerState.CLOSED: "breaker.closed",
        BreakerState.FORCED_OPEN: "breaker.forced_open",
        BreakerState.FORCED_CLOSED: "breaker.forced_closed",
    }[new]


class EventLogListener:
    """Writes each transition, with the stats at that moment, as one ``event_log`` row."""

    def __init__(self, event_log: EventLogLike) -> None:
        self.event_log = event_log

    def on_transition(
        self,
        name: str,
        old: BreakerState,
        new: BreakerState,
        reason: str,
        stats: dict[str, Any],
    ) -> None:
        metadata = None
        if reason.startswith(OPERATOR_PREFIX):
            metadata = {"actor": reason.removeprefix(OPERATOR_PREFIX)}
            reason = "operator"
        payload = {"breaker": name, "from": str(old), "to": str(new), "reason": reason}
        self.event_log.record(
            event_type_for(new, reason if metadata is None else OPERATOR_PREFIX),
            aggregate_id=name,
            payload={**payload, "stats": stats},
            metadata=metadata,
        )

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None:
        event = "breaker.degraded" if degraded else "breaker.recovered"
        self.event_log.record(event, aggregate_id=name, payload={"breaker": name, "detail": detail})

    def on_budget(self, host: str, event: str, detail: dict[str, Any]) -> None:
        self.event_log.record(f"budget.{event}", aggregate_id=host, payload={"host": host, **detail})


class LoggingListener:
    """Logs transitions as structured records."""

    def on_transition(
        self,
        name: str,
        old: BreakerState,
        new: BreakerState,
        reason: str,
        stats: dict[str, Any],
    ) -> None:
        logger.warning(
            "breaker transition",
            extra={"breaker": name, "from_state": str(old), "to_state": str(new), "reason": reason},
        )

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None:
        logger.warning(
            "breaker store %s",
            "degraded" if degraded else "recovered",
            extra={"breaker": name, "detail": detail},
        )

    def on_budget(self, host: str, event: str, detail: dict[str, Any]) -> None:
        logger.warning("request budget %s", event, extra={"host": host, **detail})


class MetricsListener:
    """Counts the transitions this process caused (the state gauge itself is read from Redis)."""

    def on_budget_wait(self, host: str, seconds: float) -> None:
        from worker.infra import metrics

        metrics.observe_budget_wait(host, seconds)

    def on_transition(
        self,
        name: str,
        old: BreakerState,
        new: BreakerState,
        reason: str,
        stats: dict[str, Any],
    ) -> None:
        from worker.infra import metrics

        metrics.record_breaker_transition(name, str(old), str(new))

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None:
        return None


class ListenerGroup:
    """Several listeners as one; each is isolated from the others' failures, and hears only what it
    listens for (the budget's hooks are optional)."""

    def __init__(self, *listeners: BreakerListener) -> None:
        self.listeners = listeners

    def _each(self, method: str, *args: Any) -> None:
        for listener in self.listeners:
            hook = getattr(listener, method, None)
            if hook is None:
                continue
            try:
                hook(*args)
            except Exception:
                # args[0] is the breaker's name, or the budget's host.
                logger.exception("breaker listener failed", extra={"breaker": args[0]})

    def on_transition(
        self,
        name: str,
        old: BreakerState,
        new: BreakerState,
        reason: str,
        stats: dict[str, Any],
    ) -> None:
        self._each("on_transition", name, old, new, reason, stats)

    def on_store_change(self, name: str, degraded: bool, detail: str) -> None:
        self._each("on_store_change", name, degraded, detail)

    def on_budget(self, host: str, event: str, detail: dict[str, Any]) -> None:
        self._each("on_budget", host, event, detail)

    def on_budget_wait(self, host: str, seconds: float) -> None:
        self._each("on_budget_wait", host, seconds)
