"""What the breaker scripts exchange with their caller, each part defined once.

KEYS, the ARGV layout (the same for every script; scripts/common.lua documents it), the reply's
head fields and the stats snapshot. To add an argument, append it in ``script_args``; to add a
reply field, append it to ``HEAD_FIELDS`` and to ``reply()`` in common.lua.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

from worker.breaker.lua_source import load_script
from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import (
    Admission,
    BreakerState,
    BreakerStats,
    PendingSuccesses,
    Transition,
)
from worker.budget.policy import BudgetPolicy

# The budget's chunk lives with the budget; the admit and record scripts include it.
SCRIPT_DIRS = (resources.files("worker.breaker") / "scripts", resources.files("worker.budget") / "scripts")
SOURCES = {name: load_script(name, SCRIPT_DIRS) for name in ("admit", "record", "command", "stats")}

# The reply's head, in order: the breaker's fields, the budget's; then the transition's old state, new
# state and reason.
BREAKER_FIELDS = ("allowed", "state", "gen", "retry_after", "token", "fseq", "okseq")
# wait: seconds until the call's slot (below zero: no slot within the policy's max_wait, nothing
# reserved); slot: when it is, in Redis time; epoch: the budget's, to fence a later refusal; rate: the
# host's rate now; event: a threshold it crossed; at_floor: a refusal the breaker counted.
BUDGET_FIELDS = ("wait", "slot", "bepoch", "rate", "event", "at_floor")
HEAD_FIELDS = (*BREAKER_FIELDS, *BUDGET_FIELDS)
STATES = {state.value: state for state in BreakerState}

NO_PENDING_ARGS = [b"-1", b"0", b"0", b"0", b"0"]
NO_LEASE = "-"  # the head's token field when no half-open permit was granted
NO_OPERATION = [b"", b"-1", b"", b""]
NO_BUDGET_ARGS: list[bytes] = []


def keys(prefix: str, budget_key: str | None = None) -> list[str]:
    """KEYS 1..3: the state hash, the window's buckets, the half-open permits (one hash tag); 4: the
    host's budget hash, for a breaker whose calls draw on a request budget."""
    breaker = [f"{prefix}:state", f"{prefix}:window", f"{prefix}:permits"]
    return breaker if budget_key is None else [*breaker, budget_key]


def budget_policy_args(policy: BudgetPolicy | None) -> list[bytes]:
    """ARGV 20..26; the same on every call of a store, so encoded once. Nothing without a budget."""
    return NO_BUDGET_ARGS if policy is None else [a.encode() for a in policy.script_args()]


def budget_args(
    policy: Sequence[bytes], successes: int = 0, epoch: int = -1, retry_after: float = 0.0
) -> list[bytes]:
    """ARGV 20..29: the budget's encoded policy, then successes to credit, the epoch a refusal's call
    was admitted in and its Retry-After. Nothing at all without a budget."""
    if not policy:
        return NO_BUDGET_ARGS
    return [*policy, b"%d" % successes, b"%d" % epoch, b"%.6f" % retry_after]


def policy_args(policy: BreakerPolicy) -> list[bytes]:
    """ARGV 1..10; the same on every call of a store, so encoded once."""
    return [repr(value).encode() for value in policy.script_args()]


def pending_args(pending: PendingSuccesses) -> list[bytes]:
    """ARGV 11..15: generation, count, highest failure sequence, age in seconds, stale count."""
    if pending.count + pending.stale_count == 0:
        return NO_PENDING_ARGS
    return [
        b"%d" % pending.generation,
        b"%d" % pending.count,
        b"%d" % pending.max_failure_seq,
        b"%.6f" % pending.age_seconds,
        b"%d" % pending.stale_count,
    ]


def operation_args(op: str, generation: int = -1, token: str | None = None, detail: str = "") -> list[bytes]:
    """ARGV 16..19: what the script is asked to do."""
    return [op.encode(), b"%d" % generation, (token or "").encode(), detail.encode()]


def script_args(
    policy: Sequence[bytes],
    pending: PendingSuccesses,
    operation: Sequence[bytes],
    budget: Sequence[bytes] = NO_BUDGET_ARGS,
) -> list[bytes]:
    return [*policy, *pending_args(pending), *operation, *budget]


def parse_reply(name: str, reply: Any) -> tuple[dict[str, str], Transition | None]:
    """The head fields by name, and the transition if the script made one (with its snapshot)."""
    if isinstance(reply, bytes | str):
        parts = _text(reply).split(" ", len(HEAD_FIELDS) + 2)
        return dict(zip(HEAD_FIELDS, parts, strict=False)), None
    parts = _text(reply[0]).split(" ", len(HEAD_FIELDS) + 2)
    old, new, reason = parts[len(HEAD_FIELDS) :]
    stats = parse_stats(name, _pairs(reply[1]))
    return dict(zip(HEAD_FIELDS, parts, strict=False)), Transition(STATES[old], STATES[new], reason, stats)


def admission(head: dict[str, str], transition: Transition | None) -> Admission:
    failure_seq = int(head["fseq"])
    wait = float(head["wait"])
    return Admission(
        # A breaker that admits a call the budget has no slot for still refuses it (budget_refused).
        allowed=head["allowed"] == "1" and wait >= 0,
        state=STATES[head["state"]],
        generation=int(head["gen"]),
        retry_after=max(0.0, float(head["retry_after"])),
        token=None if head["token"] == NO_LEASE else head["token"],
        failure_seq=failure_seq,
        transition=transition,
        clean=failure_seq == int(head["okseq"]),
        wait=abs(wait),
        slot_at=float(head["slot"]),
        budget_epoch=int(head["bepoch"]),
        budget_rate=float(head["rate"]),
        budget_event=budget_event(head),
        budget_refused=wait < 0,
    )


def budget_event(head: dict[str, str]) -> str | None:
    """The threshold the host's budget crossed in this script run ('lowered', 'paused', ...), if any."""
    event = head.get("event", "-")
    return None if event == "-" else event


def parse_stats(name: str, raw: dict[str, str]) -> BreakerStats:
    """Stats from the state hash plus the window/permit counts the script appended."""

    def num(key: str) -> int:
        return int(float(raw.get(key) or 0))

    calls, fails = num("wc"), num("wf")
    return BreakerStats(
        name=name,
        state=BreakerState(raw.get("state") or BreakerState.CLOSED),
        generation=num("gen"),
        consecutive_failures=num("fseq") - num("okseq"),
        consecutive_successes=num("cs"),
        window_calls=calls,
        window_failures=fails,
        failure_rate=fails / calls if calls else 0.0,
        # Every call ends as a success or a failure, so the scripts keep no separate total.
        total_calls=num("oks") + num("fails"),
        total_failures=num("fails"),
        total_successes=num("oks"),
        total_rejected=num("rejected"),
        last_failure_at=_opt_float(raw, "last_fail_at"),
        last_failure_error=raw.get("last_fail_err") or None,
        last_success_at=_opt_float(raw, "last_ok_at"),
        opened_at=_opt_float(raw, "opened_at"),
        next_attempt_at=_opt_float(raw, "next_at"),
        permits_in_use=num("permits"),
        failed_probes=num("fprobes"),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _opt_float(raw: dict[str, str], key: str) -> float | None:
    return float(raw[key]) if raw.get(key) else None
