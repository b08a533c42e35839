"""One breaker's scripts, run on a script host: Redis (shared by the fleet) or this process's own.

The host is anything with ``register_script``: a ``redis.Redis`` (EVALSHA, loading the script once
when Redis answers NOSCRIPT) or a ``LocalRedis`` (the same script text, run in process). Keys (one
hash tag per breaker; a budget's hash has its host's tag, so a breaker with a budget needs one Redis or
Sentinel, not Cluster): ``<prefix>:state`` (hash),
``<prefix>:window`` (hash of per-bucket counts, bounded), ``<prefix>:permits`` (zset of half-open
leases scored by expiry). Every method is one script run: one round trip on Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from worker.breaker import protocol
from worker.breaker.policy import BreakerPolicy
from worker.breaker.state import NO_PENDING, Admission, BreakerStats, PendingSuccesses, Transition
from worker.budget.hosts import budget_key
from worker.budget.policy import BudgetPolicy


@dataclass(frozen=True)
class BudgetBinding:
    """The request budget a breaker's calls draw on: the host's, shared by every source there."""

    host: str
    key: str
    policy: BudgetPolicy

    @classmethod
    def for_host(cls, host: str, policy: BudgetPolicy, key_prefix: str) -> BudgetBinding:
        """``key_prefix`` is the fleet's REDIS_KEY_PREFIX."""
        return cls(host, budget_key(key_prefix, host), policy)


class Script(Protocol):
    def __call__(self, keys: Sequence[str], args: Sequence[bytes]) -> Any: ...


class ScriptHost(Protocol):
    def register_script(self, script: str, /) -> Script: ...


class BreakerStore:
    """The four operations of a breaker, each one run of its script."""

    def __init__(
        self,
        name: str,
        host: ScriptHost,
        policy: BreakerPolicy,
        key_prefix: str,
        budget: BudgetBinding | None = None,
    ) -> None:
        self.name = name
        self.budget = budget
        self.keys = protocol.keys(key_prefix, budget.key if budget else None)
        self._policy = protocol.policy_args(policy)
        self._budget_policy = protocol.budget_policy_args(budget.policy if budget else None)
        self._scripts = {n: host.register_script(source) for n, source in protocol.SOURCES.items()}
        self._pool = host.connection_pool if isinstance(host, redis.Redis) else None
        # The most common call of all, admission with nothing buffered, has the same arguments always.
        self._admit_idle = protocol.script_args(
            self._policy, NO_PENDING, protocol.NO_OPERATION, protocol.budget_args(self._budget_policy)
        )

    def admit(self, pending: PendingSuccesses, paced_successes: int = 0) -> Admission:
        """May the call go, and (with a budget) when: ``paced_successes`` raise the host's rate."""
        if pending.is_empty() and paced_successes == 0:
            args = self._admit_idle
        else:
            budget = protocol.budget_args(self._budget_policy, paced_successes)
            args = protocol.script_args(self._policy, pending, protocol.NO_OPERATION, budget)
        return protocol.admission(*self._run("admit", args))

    def record(
        self, kind: str, generation: int, token: str | None, error: str, pending: PendingSuccesses
    ) -> Transition | None:
        operation = protocol.operation_args(kind, generation, token, error)
        budget = protocol.budget_args(self._budget_policy)
        return self._run("record", protocol.script_args(self._policy, pending, operation, budget))[1]

    def record_refusal(
        self, admission: Admission, error: str, retry_after: float, pending: PendingSuccesses
    ) -> tuple[Transition | None, dict[str, str]]:
        """The host refused a call to pace us (429, 503 + Retry-After): the budget's signal.

        Returns the breaker's transition (a refusal at the budget's floor counts as a failure) and
        the reply's budget fields (rate, event, at_floor).
        """
        operation = protocol.operation_args("throttle", admission.generation, admission.token, error)
        budget = protocol.budget_args(self._budget_policy, 0, admission.budget_epoch, retry_after)
        head, transition = self._run("record", protocol.script_args(self._policy, pending, operation, budget))
        return transition, head

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
