"""A host's budget policy: what the Lua chunk reads from its arguments."""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.infra.settings import BudgetSettings


@dataclass(frozen=True)
class BudgetPolicy:
    """Rates in requests per second for the whole fleet calling one host."""

    ceiling: float = 25.0
    floor: float = 0.5
    burst: int = 5
    decrease: float = 0.75
    increase: float = 0.5
    # The longest a call sleeps for its slot; beyond it the call is refused (BudgetPaused).
    max_wait: float = 30.0
    # The longest pause one Retry-After sets.
    pause_cap: float = 300.0

    @classmethod
    def from_settings(cls, settings: BudgetSettings, *, max_wait: float, pause_cap: float) -> BudgetPolicy:
        return cls(**settings.model_dump(), max_wait=max_wait, pause_cap=pause_cap)

    @property
    def enabled(self) -> bool:
        return self.ceiling > 0

    def degraded(self, share: float) -> BudgetPolicy:
        """This process's own policy while Redis is away: a share of the fleet's ceiling."""
        return replace(self, ceiling=max(self.floor, self.ceiling * share))

    def script_args(self) -> list[str]:
        """ARGV for ``budget_policy(args, i)`` in scripts/budget.lua, in its order."""
        values = (
            self.ceiling,
            self.floor,
            self.burst,
            self.decrease,
            self.increase,
            self.max_wait,
            self.pause_cap,
        )
        return [repr(float(v)) for v in values]
