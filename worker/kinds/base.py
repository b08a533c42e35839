"""What the sync engine, the CLI and the scheduler need from a kind of upstream.

A kind lives in one folder (``worker/kinds/<kind>/``: client, probe, normaliser, passes) and exposes one
``SourceKind`` object; ``worker.kinds.REGISTRY`` maps its name to that folder. Everything generic --
locks, fencing, runs, checkpoints, breakers, retries, scheduling -- works on any kind through this.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from worker.budget.hosts import host_of
from worker.budget.policy import BudgetPolicy
from worker.infra.settings import BreakerSettings, BudgetSettings, Settings
from worker.sync.sources import SourceSpec

if TYPE_CHECKING:
    import tenacity
    from sqlalchemy import Table

    from worker.sources.config import SourceConfig
    from worker.sync.context import RunContext
    from worker.sync.state import Bookmark
    from worker.upstream.probe import ProbeReport
    from worker.upstream.protocols import Breaker, EventSink


class SourceKind(ABC):
    name: str  # "woocommerce": breaker names, beat entries and events start with it
    label: str  # "WooCommerce", for people
    # The source a deployment configures with environment variables is called this (the name its
    # bookmarks, runs and rows carried before sources were configurable).
    default_source: str
    table: Table
    key: str  # the upstream id column; rows are unique by (source, key)
    credential_fields: tuple[str, ...]
    required_options: tuple[str, ...] = ()
    optional_options: tuple[str, ...] = ()
    # An option that takes one of a few values -> those values.
    option_choices: dict[str, tuple[str, ...]] = {}
    # Which per-source overrides this kind honours ("page_size", "concurrency"); others are refused.
    overrides: tuple[str, ...] = ()

    def spec(self, source: str) -> SourceSpec:
        return SourceSpec(source, self.name, self.table, self.key)

    @abstractmethod
    def from_environment(self, settings: Settings) -> SourceConfig | None:
        """The source configured by environment variables, or None when they configure none."""

    @abstractmethod
    def configure(self, settings: Settings, source: SourceConfig) -> Settings:
        """The settings this source's client, probe and passes read: the fleet's, with the source's own."""

    @abstractmethod
    def build_client(
        self, settings: Settings, breaker: Breaker, event_log: EventSink, retrying: tenacity.Retrying
    ) -> Any:
        """The guarded client for a source's ``configure``d settings."""

    @abstractmethod
    def run_pass(
        self, ctx: RunContext, client: Any, bookmark: Bookmark, settings: Settings
    ) -> dt.datetime | None:
        """One pass (incremental or full, per ``ctx.full``); returns the new watermark, None to keep it."""

    @abstractmethod
    def probe(self, settings: Settings) -> ProbeReport:
        """Reachable, credentials accepted, version -- without breaker, retries or events."""

    @abstractmethod
    def breaker_settings(self, settings: Settings) -> BreakerSettings:
        """The fleet's breaker policy for this kind (``<KIND>_BREAKER__*``)."""

    def breaker_name(self, source: str) -> str:
        return f"{self.name}:{source}"

    def breaker_policy(self, settings: Settings, source: SourceConfig) -> BreakerSettings:
        """The kind's policy with the source's overrides (validated: a bad override fails here)."""
        return BreakerSettings(**{**self.breaker_settings(settings).model_dump(), **source.breaker})

    def budget_settings(self, settings: Settings) -> BudgetSettings:
        """The fleet's request budget per host for this kind (``<KIND>_BUDGET__*``)."""
        budget: BudgetSettings = getattr(settings, f"{self.name}_budget")
        return budget

    def budget_policy(self, settings: Settings, source: SourceConfig) -> BudgetPolicy:
        """The kind's budget with the source's overrides (validated: a bad override fails here)."""
        merged = BudgetSettings(**{**self.budget_settings(settings).model_dump(), **source.budget})
        if merged.ceiling and merged.floor > merged.ceiling:
            # Every refusal would then count against the breaker: the budget could never slow down.
            msg = f"budget floor {merged.floor:g} is above its ceiling {merged.ceiling:g}"
            raise ValueError(msg)
        return BudgetPolicy.from_settings(
            merged, max_wait=settings.budget_max_wait_seconds, pause_cap=settings.retry_after_cap_seconds
        )

    def budget_host(self, source: SourceConfig) -> str:
        """The host whose budget the source's calls draw from."""
        return host_of(source.url)

    def check(self, source: SourceConfig) -> list[str]:
        """What is missing or unknown in a source of this kind (empty when it can be used)."""
        problems = [
            f"credential {f!r} is missing" for f in self.credential_fields if f not in source.credentials
        ]
        problems += [
            f"credential {f!r} is not one of {', '.join(self.credential_fields)}"
            for f in source.credentials
            if f not in self.credential_fields
        ]
        problems += [f"option {o!r} is missing" for o in self.required_options if not source.options.get(o)]
        known = (*self.required_options, *self.optional_options)
        problems += [
            f"option {o!r} is not one of {', '.join(known) or 'none'}"
            for o in source.options
            if o not in known
        ]
        for field in ("page_size", "concurrency"):
            if getattr(source, field) is not None and field not in self.overrides:
                problems.append(f"{field}: {self.label} sources do not use it")
        for option, choices in self.option_choices.items():
            value = source.options.get(option)
            if value is not None and value not in choices:
                problems.append(f"option {option!r} must be one of {', '.join(choices)}, not {value!r}")
        return problems


def secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value is not None else None
