"""Breaker states, the stats snapshot and the answers a store gives the breaker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class BreakerState(StrEnum):
    """The five states; the two forced ones are set only by an operator."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


@dataclass(frozen=True)
class BreakerStats:
    """What an operator sees; times are epoch seconds of the store's clock (Redis TIME)."""

    name: str
    state: BreakerState
    generation: int
    consecutive_failures: int
    consecutive_successes: int
    window_calls: int
    window_failures: int
    failure_rate: float
    total_calls: int
    total_failures: int
    total_successes: int
    total_rejected: int
    last_failure_at: float | None
    last_failure_error: str | None
    last_success_at: float | None
    opened_at: float | None
    next_attempt_at: float | None
    permits_in_use: int
    failed_probes: int
    degraded: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values, for the event log and ``--json``."""
        data = asdict(self)
        data["state"] = str(self.state)
        return data


@dataclass(frozen=True)
class Transition:
    """A state change that *this* caller's script call caused (so it is reported once)."""

    old: BreakerState
    new: BreakerState
    reason: str
    stats: BreakerStats


@dataclass(slots=True)
class Admission:
    """The answer to "may I call?".

    ``generation`` fences the outcome report; ``token`` is the half-open permit (lease) if one was
    granted; ``failure_seq`` orders a later buffered success against failures, and ``clean`` says
    no failure was unanswered at admission, so the success may wait (see breaker.py).
    """

    allowed: bool
    state: BreakerState
    generation: int
    retry_after: float
    token: str | None = None
    failure_seq: int = 0
    transition: Transition | None = None
    clean: bool = True
    # The request budget (zero and None without one): how long to wait for the call's slot, when the
    # slot is (Redis time), the budget's epoch (fences a later refusal), the host's rate now, a
    # threshold the rate crossed; ``budget_refused``: no slot within the longest a call may wait.
    wait: float = 0.0
    slot_at: float = 0.0
    budget_epoch: int = 0
    budget_rate: float = 0.0
    budget_event: str | None = None
    budget_refused: bool = False


@dataclass(frozen=True)
class PendingSuccesses:
    """Successes counted locally since the last round trip.

    ``count`` were admitted in ``generation`` (the newest this worker saw); ``stale_count`` under
    older generations, which only reach the totals.
    """

    generation: int = -1
    count: int = 0
    max_failure_seq: int = 0
    age_seconds: float = 0.0
    stale_count: int = 0

    def is_empty(self) -> bool:
        return self.count + self.stale_count == 0


NO_PENDING = PendingSuccesses()


EMPTY_STATS_FIELDS: dict[str, Any] = {
    "generation": 0,
    "consecutive_failures": 0,
    "consecutive_successes": 0,
    "window_calls": 0,
    "window_failures": 0,
    "failure_rate": 0.0,
    "total_calls": 0,
    "total_failures": 0,
    "total_successes": 0,
    "total_rejected": 0,
    "last_failure_at": None,
    "last_failure_error": None,
    "last_success_at": None,
    "opened_at": None,
    "next_attempt_at": None,
    "permits_in_use": 0,
    "failed_probes": 0,
}
