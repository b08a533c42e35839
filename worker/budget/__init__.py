"""The request budget of each upstream host, shared by the whole fleet.

A breaker keeps the fleet off a host that is down; the budget keeps it from overloading one that is
up. Every worker process and every source calling one host (``hosts.host_of``) draws slots from one
GCRA schedule in Redis whose rate the host's answers adapt: a 429 (or a 503 with ``Retry-After``)
cuts it for everyone at once, successes raise it back toward the ceiling, a ``Retry-After`` pauses
every slot until it passes. The rules are one Lua chunk (``scripts/budget.lua``) that the breaker's
admission and record scripts include, so asking both costs one round trip.
"""

from worker.budget.hosts import budget_key, host_of
from worker.budget.policy import BudgetPolicy
from worker.budget.stats import (
    BudgetStats,
    clear_ceiling,
    list_budgets,
    read_budget,
    reset_budget,
    set_ceiling,
)

__all__ = [
    "BudgetPolicy",
    "BudgetStats",
    "budget_key",
    "clear_ceiling",
    "host_of",
    "list_budgets",
    "read_budget",
    "reset_budget",
    "set_ceiling",
]
