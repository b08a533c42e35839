"""The fleet-wide store: breaker state in Redis, every decision one Lua script run with EVALSHA.

Keys (one hash tag per breaker, so the scripts also run on Redis Cluster):
``<prefix>:state`` (hash), ``<prefix>:window`` (hash of per-bucket counts, bounded),
``<prefix>:permits`` (zset of half-open leases scored by expiry). Time is Redis ``TIME``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.connection import Connection

from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import (
    NO_PENDING_ARGS,
    Admission,
    BreakerState,
    BreakerStats,
    PendingSuccesses,
    Transition,
)

INCLUDE = "--#include common\n"
# Redis closes idle clients after whole seconds: a connection used more recently needs no check.
IDLE_CHECK_SECONDS = 1.0


def _load(name: str) -> str:
    """The script with common.lua pasted at its include line (admit.lua has a fast path above it)."""
    scripts = resources.files("worker.breaker") / "scripts"
    body = (scripts / f"{name}.lua").read_text()
    if body.count(INCLUDE) != 1:
        raise ValueError(f"{name}.lua must include common exactly once")
    return body.replace(INCLUDE, (scripts / "common.lua").read_text() + "\n")


SCRIPTS = {name: _load(name) for name in ("admit", "record", "command", "stats")}
STATES = {state.value: state for state in BreakerState}


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


class PackedScript:
    """One script's EVALSHA with the keys and policy packed once: a call packs only what varies.

    redis-py's generic command path (argument encoding, retry wrapper, response callbacks) costs
    more client CPU than the rest of a guarded call; this sends the same bytes through the same
    connection pool with a fraction of the work.
    """

    def __init__(self, source: str, keys: Sequence[str], fixed: Sequence[bytes]) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis's script id
        head = [b"EVALSHA", self.sha.encode(), b"%d" % len(keys), *(k.encode() for k in keys), *fixed]
        self._count = len(head)
        self._head = b"".join(_bulk(a) for a in head)

    def pack(self, args: Sequence[bytes]) -> bytes:
        parts = [b"*%d\r\n" % (self._count + len(args)), self._head]
        for arg in args:
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        return b"".join(parts)


class RedisBreakerStore:
    """Runs the breaker scripts for one breaker; every method is one round trip."""

    def __init__(self, name: str, client: redis.Redis, policy: BreakerPolicy, key_prefix: str) -> None:
        self.name = name
        self.policy = policy
        self.client = client
        self.keys = [f"{key_prefix}:state", f"{key_prefix}:window", f"{key_prefix}:permits"]
        # The policy is the same on every call: packed once with the keys (ARGV 1..10).
        policy_args = [repr(a).encode() for a in policy.script_args()]
        self._scripts = {n: PackedScript(src, self.keys, policy_args) for n, src in SCRIPTS.items()}
        # The most common request of all, admission with nothing buffered, is fully static.
        self._admit_idle = self._scripts["admit"].pack(NO_PENDING_ARGS)
        self._lane_lock = threading.Lock()
        self._conn: Connection | None = None
        self._pid = 0
        self._used_at = 0.0

    def admit(self, pending: PendingSuccesses) -> Admission:
        script = self._scripts["admit"]
        packet = self._admit_idle if pending.is_empty() else script.pack(pending.encode())
        head, transition = self._parse(self._send(script, packet))
        allowed, state, gen, retry_after, lease, fseq, okseq = head[:7]
        failure_seq = int(fseq)
        return Admission(
            allowed=allowed == "1",
            state=STATES[state],
            generation=int(gen),
            retry_after=max(0.0, float(retry_after)),
            token=None if lease == "-" else lease,
            failure_seq=failure_seq,
            transition=transition,
            clean=failure_seq == int(okseq),
        )

    def record(
        self, kind: str, generation: int, token: str | None, error: str, pending: PendingSuccesses
    ) -> Transition | None:
        extra = [kind.encode(), b"%d" % generation, (token or "").encode(), error.encode()]
        return self._parse(self._run("record", [*pending.encode(), *extra]))[1]

    def command(self, op: str, reason: str) -> Transition:
        tr = self._parse(self._run("command", [*NO_PENDING_ARGS, op.encode(), reason.encode()]))[1]
        assert tr is not None  # the command script always reports its transition
        return tr

    def stats(self) -> BreakerStats:
        reply = self._run("stats", NO_PENDING_ARGS)
        return parse_stats(self.name, _pairs(reply[1]))

    def _run(self, name: str, args: Sequence[bytes]) -> Any:
        script = self._scripts[name]
        return self._send(script, script.pack(args))

    def _send(self, script: PackedScript, packet: bytes) -> Any:
        """One round trip: on this store's own connection, or a pooled one if another thread has it."""
        if not self._lane_lock.acquire(blocking=False):
            pool = self.client.connection_pool
            conn = pool.get_connection()
            try:
                return _round_trip(conn, script, packet)
            finally:
                pool.release(conn)
        try:
            conn = self._lane()
            try:
                return _round_trip(conn, script, packet)
            except BaseException:
                # Whatever stopped the round trip (an interrupt between send and read included),
                # no reply may stay behind for the next call to read as its own.
                conn.disconnect()  # type: ignore[no-untyped-call]
                raise
            finally:
                self._used_at = time.monotonic()
        finally:
            self._lane_lock.release()

    def _lane(self) -> Connection:
        """This store's connection, taken from the client's pool once per process and kept.

        Checking a connection out of redis-py's pool and back in costs more client CPU than the
        round trip itself, so the store keeps one. A connection that sat idle for a second or more
        is checked the way the pool checks one it hands out: if it has something to read (Redis
        closed it, e.g. its idle ``timeout``, which counts whole seconds), it is reconnected rather
        than sent a command it might not answer. A busy connection skips that syscall; if Redis
        drops it within the second anyway, the call fails and the breaker degrades as for any
        Redis error. Every failed round trip disconnects, so no stale reply is ever read.
        """
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            # First use, or a forked child: the parent's connection is not ours to use.
            pool = self.client.connection_pool
            conn = self._conn = pool.get_connection()
            self._pid = os.getpid()
            weakref.finalize(self, _give_back, pool, conn, self._pid)
            return conn
        if time.monotonic() - self._used_at < IDLE_CHECK_SECONDS:
            return conn
        try:
            stale = conn.can_read()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            stale = True
        if stale:
            conn.disconnect()  # type: ignore[no-untyped-call]  # the next send connects afresh
        return conn

    def _parse(self, reply: Any) -> tuple[list[str], Transition | None]:
        """The head fields, and the transition if the script reported one (with a snapshot)."""
        if isinstance(reply, (bytes, str)):
            return _text(reply).split(" ", 9), None
        head = _text(reply[0]).split(" ", 9)
        stats = parse_stats(self.name, _pairs(reply[1]))
        return head, Transition(STATES[head[7]], STATES[head[8]], head[9], stats)


def _round_trip(conn: Connection, script: PackedScript, packet: bytes) -> Any:
    """Send one EVALSHA and read its reply; loads the script once if Redis lacks it.

    On an error mid-command redis-py's connection disconnects itself (for any exception, including
    an interrupt), so a connection is never reused with half a reply in it.
    """
    # (redis-py leaves the send methods untyped.)
    conn.send_packed_command([packet])  # type: ignore[no-untyped-call]
    try:
        return conn.read_response()
    except redis.exceptions.NoScriptError:
        pass  # Redis restarted or flushed its scripts: load it, then send again
    conn.send_command("SCRIPT", "LOAD", script.source)  # type: ignore[no-untyped-call]
    conn.read_response()
    conn.send_packed_command([packet])  # type: ignore[no-untyped-call]
    return conn.read_response()


def _give_back(pool: redis.ConnectionPool, conn: Connection, pid: int) -> None:
    """When a store is dropped, its connection goes back to the pool (in the process that took it)."""
    if os.getpid() == pid:
        pool.release(conn)


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
