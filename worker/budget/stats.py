"""Reading and setting a host's budget from outside a call: the CLI, metrics, tests.

Plain commands on the host's hash (see scripts/budget.lua for its fields); the decisions themselves
are made only by the Lua chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker.budget.hosts import budget_key


@dataclass(frozen=True)
class BudgetStats:
    """One host's budget as the fleet shares it; times are Redis time (epoch seconds)."""

    host: str
    rate: float | None  # None: nothing called the host yet, or the budget is off
    ceiling: float | None  # the ceiling in force: the operator's, else the configured one
    operator_ceiling: float | None
    paused_until: float | None
    epoch: int
    granted: int
    throttled: int
    cuts: int
    pauses: int
    last_throttle_at: float | None
    last_cut_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float(raw: Mapping[str, str], field: str) -> float | None:
    value = raw.get(field)
    return float(value) if value else None


def _int(raw: Mapping[str, str], field: str) -> int:
    return int(float(raw.get(field) or 0))


def read_budget(client: redis.Redis, prefix: str, host: str, configured: float | None = None) -> BudgetStats:
    """``configured`` is the ceiling the host's sources are configured with, when known."""
    raw = {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in client.hgetall(budget_key(prefix, host)).items()
    }
    operator = _float(raw, "ceiling")
    ceiling = operator if operator is not None else configured
    rate = _float(raw, "rate")
    if rate is None and raw.get("tat"):
        rate = ceiling
    if rate is not None and ceiling is not None:
        rate = min(rate, ceiling)
    return BudgetStats(
        host=host,
        rate=rate,
        ceiling=ceiling,
        operator_ceiling=operator,
        paused_until=_float(raw, "paused_until"),
        epoch=_int(raw, "epoch"),
        granted=_int(raw, "granted"),
        throttled=_int(raw, "throttled"),
        cuts=_int(raw, "cuts"),
        pauses=_int(raw, "pauses"),
        last_throttle_at=_float(raw, "last_throttle_at"),
        last_cut_at=_float(raw, "last_cut_at"),
    )


def known_hosts(client: redis.Redis, prefix: str) -> list[str]:
    """Hosts that have a budget hash, whether or not a configured source still calls them."""
    head = f"{prefix}:budget:{{"
    hosts = []
    for key in client.scan_iter(match=f"{head}*}}", count=500):
        name = key.decode() if isinstance(key, bytes) else str(key)
        hosts.append(name[len(head) : -1])
    return sorted(hosts)


def list_budgets(client: redis.Redis, prefix: str, configured: Mapping[str, float]) -> list[BudgetStats]:
    """Every configured host (host -> its ceiling) and every host with state in Redis."""
    hosts = sorted(set(configured) | set(known_hosts(client, prefix)))
    return [read_budget(client, prefix, host, configured.get(host)) for host in hosts]


def set_ceiling(client: redis.Redis, prefix: str, host: str, ceiling: float) -> None:
    """The operator's ceiling for a host: every process's next admission there obeys it."""
    if ceiling <= 0:
        msg = "a ceiling is a positive number of requests per second"
        raise ValueError(msg)
    client.hset(budget_key(prefix, host), "ceiling", repr(float(ceiling)))


def clear_ceiling(client: redis.Redis, prefix: str, host: str) -> None:
    """Back to the configured ceiling."""
    client.hdel(budget_key(prefix, host), "ceiling")


def reset_budget(client: redis.Redis, prefix: str, host: str) -> None:
    """Forget what the host taught the fleet (rate, pause, counters); an operator's ceiling stays."""
    key = budget_key(prefix, host)
    ceiling = client.hget(key, "ceiling")
    pipe = client.pipeline()
    pipe.delete(key)
    if ceiling is not None:
        pipe.hset(key, "ceiling", ceiling)
    pipe.execute()
