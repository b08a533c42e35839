"""The fleet-wide store: breaker state in Redis, every decision one Lua script run with EVALSHA.

Keys (one hash tag per breaker, so the scripts also run on Redis Cluster):
``<prefix>:state`` (hash), ``<prefix>:window`` (hash of per-bucket counts, bounded),
``<prefix>:permits`` (zset of half-open leases scored by expiry). Time is Redis ``TIME``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis

from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import (
    Admission,
    BreakerState,
    BreakerStats,
    PendingSuccesses,
    Transition,
)


def _load(name: str) -> str:
    scripts = resources.files("worker.breaker") / "scripts"
    return (scripts / "common.lua").read_text() + "\n" + (scripts / f"{name}.lua").read_text()


SCRIPTS = {name: _load(name) for name in ("admit", "record", "command", "stats")}


class RedisBreakerStore:
    """Runs the breaker scripts for one breaker; every method is one round trip."""

    def __init__(self, name: str, client: redis.Redis, policy: BreakerPolicy, key_prefix: str) -> None:
        self.name = name
        self.policy = policy
        self.client = client
        self.keys = [f"{key_prefix}:state", f"{key_prefix}:window", f"{key_prefix}:permits"]
        # register_script runs EVALSHA and loads the script once on NOSCRIPT.
        self._scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
        # Encoded once: the policy is the same on every call.
        self._policy_args = [repr(a).encode() for a in policy.script_args()]

    def admit(self, pending: PendingSuccesses) -> Admission:
        head, transition = self._parse(self._run("admit", pending, []))
        allowed, state, gen, retry_after, lease, fseq, okseq = head[:7]
        return Admission(
            allowed=allowed == "1",
            state=BreakerState(state),
            generation=int(gen),
            retry_after=max(0.0, float(retry_after)),
            token=None if lease == "-" else lease,
            failure_seq=int(fseq),
            transition=transition,
            clean=fseq == okseq,
        )

    def record(
        self, kind: str, generation: int, token: str | None, error: str, pending: PendingSuccesses
    ) -> Transition | None:
        return self._parse(self._run("record", pending, [kind, generation, token or "", error]))[1]

    def command(self, op: str, reason: str) -> Transition:
        tr = self._parse(self._run("command", PendingSuccesses(), [op, reason]))[1]
        assert tr is not None  # the command script always reports its transition
        return tr

    def stats(self) -> BreakerStats:
        reply = self._run("stats", PendingSuccesses(), [])
        return parse_stats(self.name, _pairs(reply[1]))

    def _run(self, script: str, pending: PendingSuccesses, extra: list[Any]) -> Any:
        args = [*self._policy_args, *pending.encode(), *extra]
        return self._scripts[script](keys=self.keys, args=args)

    def _parse(self, reply: Any) -> tuple[list[str], Transition | None]:
        """The head fields, and the transition if the script reported one (with a snapshot)."""
        if isinstance(reply, bytes):
            return reply.decode().split(" ", 9), None
        head = _text(reply[0]).split(" ", 9)
        stats = parse_stats(self.name, _pairs(reply[1]))
        return head, Transition(BreakerState(head[7]), BreakerState(head[8]), head[9], stats)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _opt_float(raw: dict[str, str], key: str) -> float | None:
    return float(raw[key]) if raw.get(key) else None


def parse_stats(name: str, raw: dict[str, str]) -> BreakerStats:
    """Stats from the state hash plus the window/permit counts a script appended."""

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
        total_calls=num("calls"),
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
