"""One breaker's scripts, run on a script host: Redis (shared by the fleet) or this process's own.

The host is anything with ``register_script``: a ``redis.Redis`` (EVALSHA, loading the script once
when Redis answers NOSCRIPT) or a ``LocalRedis`` (the same script text, run in process). Keys (one
hash tag per breaker, so the scripts also run on Redis Cluster): ``<prefix>:state`` (hash),
``<prefix>:window`` (hash of per-bucket counts, bounded), ``<prefix>:permits`` (zset of half-open
leases scored by expiry). Every method is one script run: one round trip on Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import redis

from worker.breaker import protocol
from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import NO_PENDING, Admission, BreakerStats, PendingSuccesses, Transition


class Script(Protocol):
    def __call__(self, keys: Sequence[str], args: Sequence[bytes]) -> Any: ...


class ScriptHost(Protocol):
    def register_script(self, script: str, /) -> Script: ...


class BreakerStore:
    """The four operations of a breaker, each one run of its script."""

    def __init__(self, name: str, host: ScriptHost, policy: BreakerPolicy, key_prefix: str) -> None:
        self.name = name
        self.keys = protocol.keys(key_prefix)
        self._policy = protocol.policy_args(policy)
        self._scripts = {n: host.register_script(source) for n, source in protocol.SOURCES.items()}
        self._pool = host.connection_pool if isinstance(host, redis.Redis) else None
        # The most common call of all, admission with nothing buffered, has the same arguments always.
        self._admit_idle = protocol.script_args(self._policy, NO_PENDING, protocol.NO_OPERATION)

    def admit(self, pending: PendingSuccesses) -> Admission:
        args = (
            self._admit_idle
            if pending.is_empty()
            else protocol.script_args(self._policy, pending, protocol.NO_OPERATION)
        )
        return protocol.admission(*self._run("admit", args))

    def record(
        self, kind: str, generation: int, token: str | None, error: str, pending: PendingSuccesses
    ) -> Transition | None:
        operation = protocol.operation_args(kind, generation, token, error)
        return self._run("record", protocol.script_args(self._policy, pending, operation))[1]

    def command(self, op: str, reason: str) -> Transition:
        operation = protocol.operation_args(op, detail=reason)
        tr = self._run("command", protocol.script_args(self._policy, NO_PENDING, operation))[1]
        assert tr is not None  # the command script always reports its transition
        return tr

    def stats(self) -> BreakerStats:
        _, snapshot = self._run(
            "stats", protocol.script_args(self._policy, NO_PENDING, protocol.NO_OPERATION)
        )
        assert snapshot is not None  # the stats script reports a snapshot as a (null) transition
        return snapshot.stats

    def _run(self, script: str, args: Sequence[bytes]) -> tuple[dict[str, str], Transition | None]:
        try:
            reply = self._scripts[script](keys=self.keys, args=args)
        except redis.RedisError:
            raise  # redis-py closed the connection if the error left it unusable
        except BaseException:
            # Interrupted between send and read (a signal, a task time limit): redis-py has handed the
            # connection back with this reply unread, and the next command on it would read it as
            # its own. Closing the idle connections drops it.
            if self._pool is not None:
                self._pool.disconnect(inuse_connections=False)
            raise
        return protocol.parse_reply(self.name, reply)
