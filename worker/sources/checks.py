"""Whether a configured source can be used: its kind's own checks, plus the fields every kind shares.

The YAML loader and the store both ask here, so a file and a command line are judged alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from celery.schedules import crontab
from pydantic import BaseModel, ValidationError

from worker.infra.settings import BreakerSettings, BudgetSettings, is_local_host
from worker.sources.config import SourceConfig

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def source_problems(source: SourceConfig, *, allow_insecure_http: bool = False) -> list[str]:
    """Every problem of ``source``, each naming its field (empty when it can be used).

    ``allow_insecure_http`` is ALLOW_INSECURE_HTTP: without it, plain http goes to loopback hosts only.
    """
    # Imported here: the kinds import the sync engine, which the configuration layer must not need.
    from worker.kinds import UnknownKind, get_kind

    try:
        problems = get_kind(source.kind).check(source)
    except UnknownKind as exc:
        problems = [f"kind: {exc}"]
    problems += url_problems(source.url, allow_insecure_http=allow_insecure_http)
    problems += breaker_problems(source) + budget_problems(source)
    return problems + cron_problems(source.full_cron)


def url_problems(url: str, *, allow_insecure_http: bool = False) -> list[str]:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        return [f"url: not a valid URL ({exc})"]
    if parts.scheme not in ("http", "https") or not host:
        return ["url: must be an http:// or https:// URL with a host name"]
    if parts.username or parts.password:
        return ["url: must not embed credentials; give them as credentials"]
    if parts.query or parts.fragment:
        # A query is where keys end up (?consumer_key=...), and the URL is shown and exported in clear.
        return ["url: must not have a query or fragment; give keys as credentials"]
    if parts.scheme == "http" and not is_local_host(host.lower()) and not allow_insecure_http:
        return [f"url: plain http to {host} would send credentials in clear text; use https:// "
                "(or set ALLOW_INSECURE_HTTP=true)"]  # fmt: skip
    return []


def breaker_problems(source: SourceConfig) -> list[str]:
    return _override_problems("breaker", source.breaker, BreakerSettings, "a breaker setting")


def budget_problems(source: SourceConfig) -> list[str]:
    problems = _override_problems("budget", source.budget, BudgetSettings, "a request budget setting")
    # Only when the source gives both: one alone meets the kind's other one, known at run time only.
    if not problems and {"ceiling", "floor"} <= source.budget.keys():
        budget = BudgetSettings(**source.budget)
        if budget.ceiling and budget.floor > budget.ceiling:
            problems.append("budget.floor: must not exceed budget.ceiling")
    return problems


def _override_problems(
    field: str, overrides: Mapping[str, Any], model: type[BaseModel], what: str
) -> list[str]:
    """Each unknown field and each bad value of the overrides of ``model``, named ``<field>.<name>``."""
    unknown = sorted(set(overrides) - set(model.model_fields))
    problems = [f"{field}.{name}: not {what}" for name in unknown]
    try:
        model(**overrides)
    except ValidationError as exc:
        problems += [f"{field}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return problems


def cron_problems(expression: str | None) -> list[str]:
    """A five-field cron expression (minute hour day-of-month month day-of-week), as beat reads it."""
    if expression is None:
        return []
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        return [f"full_cron: expected 5 fields, got {len(fields)} in {expression!r}"]
    try:
        crontab(**dict(zip(CRON_FIELDS, fields, strict=True)))
    except ValueError as exc:
        return [f"full_cron: {expression!r} is not a valid cron expression ({exc})"]
    return []
