"""Which sources the fleet mirrors: the ``sources`` table, plus the environment's.

A deployment configured with ``WOOCOMMERCE_*``/``ODOO_*`` variables keeps working unchanged: each
configured upstream is a source named as its bookmarks and runs always were (``woocommerce-products``,
``odoo-suppliers``). A row of the same name in the table takes precedence over it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from models import Source
from worker.infra.settings import Settings
from worker.sources.config import SourceConfig
from worker.sync.sources import table_of

if TYPE_CHECKING:
    from worker.sources.secrets import CredentialCipher

SOURCES = table_of(Source)
READ_TIMEOUT_MS = 5_000


class UnknownSource(LookupError):
    """No source of that name is configured."""


def environment_sources(settings: Settings) -> list[SourceConfig]:
    from worker.kinds import all_kinds

    return [s for s in (kind.from_environment(settings) for kind in all_kinds()) if s is not None]


def source_from_row(row: Any, cipher: CredentialCipher | None) -> SourceConfig:
    """The source a row holds; without a cipher, without its credentials (for what needs only the rest)."""
    return SourceConfig(
        name=row.name,
        kind=row.kind,
        url=row.url,
        options=dict(row.options or {}),
        credentials=cipher.open(row.credentials, source=row.name) if cipher is not None else {},
        enabled=row.enabled,
        incremental_interval_seconds=row.incremental_interval_seconds,
        full_cron=row.full_cron,
        page_size=row.page_size,
        concurrency=row.concurrency,
        breaker=dict(row.breaker or {}),
        budget=dict(row.budget or {}),
    )


def _cipher(settings: Settings) -> CredentialCipher:
    from worker.sources.secrets import CredentialCipher

    return CredentialCipher.from_settings(settings)


def _rows(session: Session, name: str | None = None) -> list[Any]:
    query = select(SOURCES)
    if name is not None:
        query = query.where(SOURCES.c.name == name)
    try:
        if name is None and session.get_bind().dialect.name == "postgresql":
            # Beat and the sweeper read every source on their loop: a table locked by a migration must not
            # stall them. (A run's own one-row read stays a single statement.)
            session.execute(text(f"SET LOCAL statement_timeout = '{READ_TIMEOUT_MS}ms'"))
        return list(session.execute(query.order_by(SOURCES.c.name)).all())
    except SQLAlchemyError:
        # A database not yet upgraded has no sources table: only the environment's sources exist.
        session.rollback()
        if _table_exists(session):
            raise
        return []


def _table_exists(session: Session) -> bool:
    from sqlalchemy import inspect

    return inspect(session.connection()).has_table(SOURCES.name)


def all_sources(
    settings: Settings, session_factory: Callable[[], Session], *, credentials: bool = True
) -> list[SourceConfig]:
    """Every configured source, enabled or not, ordered by name.

    ``credentials=False`` leaves the stored credentials sealed: what only schedules, sweeps, counts or
    lists sources needs neither SOURCES_ENCRYPTION_KEYS nor every row to open.
    """
    with session_factory() as session:
        rows = _rows(session)
    cipher = _cipher(settings) if rows and credentials else None
    declared = {row.name: source_from_row(row, cipher) for row in rows}
    for source in environment_sources(settings):
        declared.setdefault(source.name, source)
    return [declared[name] for name in sorted(declared)]


def version_of(session: Session, name: str) -> dt.datetime | None:
    """When the source's row last changed (None for an environment source): one indexed read."""
    query = select(SOURCES.c.updated_at).where(SOURCES.c.name == name)
    try:
        return session.execute(query).scalar_one_or_none()
    except SQLAlchemyError:
        session.rollback()
        return None


def find_source(
    settings: Settings, session_factory: Callable[[], Session], name: str, *, credentials: bool = True
) -> SourceConfig:
    """The source called ``name``; raises ``UnknownSource`` listing the known names."""
    with session_factory() as session:
        rows = _rows(session, name)
    if rows:
        return source_from_row(rows[0], _cipher(settings) if credentials else None)
    for source in environment_sources(settings):
        if source.name == name:
            return source
    known = [s.name for s in all_sources(settings, session_factory, credentials=False)]
    msg = f"no source named {name!r}; configured: {', '.join(known) or 'none'}"
    raise UnknownSource(msg)


def breaker_policies(settings: Settings, sources: list[SourceConfig]) -> dict[str, Any]:
    """Breaker name (``<kind>:<source>``) -> the source's policy, for every given source."""
    from worker.kinds import get_kind

    policies: dict[str, Any] = {}
    for source in sources:
        kind = get_kind(source.kind)
        policies[kind.breaker_name(source.name)] = kind.breaker_policy(settings, source)
    return policies


def budget_ceilings(settings: Settings, sources: list[SourceConfig]) -> dict[str, float]:
    """Host -> the ceiling its enabled sources are configured with: the lowest, when several share it.

    Disabled sources never call their host, and a source whose budget is off (ceiling 0, its kind's or
    its own) adds no ceiling: a host none of whose sources has a budget is left out.
    """
    from worker.kinds import get_kind

    ceilings: dict[str, float] = {}
    for source in sources:
        if not source.enabled:
            continue
        kind = get_kind(source.kind)
        policy = kind.budget_policy(settings, source)
        if policy.enabled:
            host = kind.budget_host(source)
            ceilings[host] = min(policy.ceiling, ceilings.get(host, policy.ceiling))
    return ceilings


def fleet_sources(settings: Settings) -> list[SourceConfig]:
    """Every configured source without its credentials, read with a short-lived connection.

    With the database away, only the environment's sources are known (breakers and budgets live in Redis).
    """
    from worker.infra.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url, connect_timeout=3)
    try:
        return all_sources(settings, make_session_factory(engine), credentials=False)
    except OperationalError:  # the database is away: the state in Redis still answers
        return environment_sources(settings)
    finally:
        engine.dispose()


def fleet_breaker_policies(settings: Settings) -> dict[str, Any]:
    """Every configured source's breaker name -> policy."""
    return breaker_policies(settings, fleet_sources(settings))


def fleet_budget_ceilings(settings: Settings) -> dict[str, float]:
    """Every host the configured sources call with a budget -> its configured ceiling."""
    return budget_ceilings(settings, fleet_sources(settings))
