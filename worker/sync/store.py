"""Page upserts (``INSERT ... ON CONFLICT DO UPDATE``), writing only rows whose content changed.

The conflict update is guarded by ``content_hash IS DISTINCT`` (or a tombstone to clear), so an
unchanged record is not rewritten at all: no new row version, no ``last_synced_at`` bump, and a
no-op run writes zero rows. ``first_synced_at`` is only ever set by the insert.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table, column, literal_column, or_, select
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import postgresql, sqlite

from worker.sync.hashing import content_hash
from worker.sync.sources import SourceSpec

# Never overwritten on conflict: the identity and the first time we saw the record.
KEEP_ON_CONFLICT = frozenset({"id", "first_synced_at"})


@dataclass(frozen=True)
class PageWrite:
    inserted: int
    updated: int
    unchanged: int


def prepare_rows(spec: SourceSpec, rows: Sequence[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """Hash and stamp rows; a key repeated within one page keeps its last version.

    PostgreSQL refuses to update one row twice in one statement, and a listing that shifts while
    it is paged can repeat a record.
    """
    by_key: dict[Any, dict[str, Any]] = {}
    for row in rows:
        stamped = {**row, "content_hash": content_hash(row)}
        stamped.update(source=spec.source, first_synced_at=now, last_synced_at=now, deleted_at=None)
        by_key[row[spec.key]] = stamped
    return list(by_key.values())


def upsert_page(
    conn: Connection, spec: SourceSpec, rows: Sequence[dict[str, Any]], now: dt.datetime
) -> PageWrite:
    """Upsert one page of normalised rows inside the caller's transaction."""
    return upsert_prepared(conn, spec, prepare_rows(spec, rows, now))


def upsert_prepared(conn: Connection, spec: SourceSpec, prepared: list[dict[str, Any]]) -> PageWrite:
    """Upsert rows ``prepare_rows`` already hashed and stamped, inside the caller's transaction."""
    if not prepared:
        return PageWrite(0, 0, 0)
    if conn.dialect.name == "postgresql":
        inserted, updated = _upsert_postgresql(conn, spec, prepared)
    elif conn.dialect.name == "sqlite":
        inserted, updated = _upsert_sqlite(conn, spec, prepared)
    else:
        msg = f"unsupported database dialect {conn.dialect.name!r}"
        raise RuntimeError(msg)
    return PageWrite(inserted, updated, len(prepared) - inserted - updated)


def _set_clause(table: Table, excluded: Any) -> dict[str, Any]:
    return {c.name: excluded[c.name] for c in table.columns if c.name not in KEEP_ON_CONFLICT}


def _changed(table: Table, excluded: Any) -> Any:
    # A record that reappears after being marked deleted is rewritten even if its content is the same.
    return or_(table.c.content_hash != excluded.content_hash, table.c.deleted_at.is_not(None))


@functools.cache
def _sqlite_statement(table: Table, key: str) -> Any:
    """The SQLite page upsert, built once per table (shared by its sources: the source is a value).

    Executed with the page's rows as parameters, SQLAlchemy's "insertmanyvalues" sends it as one
    multi-row ``INSERT ... VALUES (...), (...) ON CONFLICT ... RETURNING`` per page, from a compiled
    form that is cached (a ``.values(rows)`` statement is recompiled for every page).
    """
    insert = sqlite.insert(table)
    stmt = insert.on_conflict_do_update(
        index_elements=[table.c.source, table.c[key]],
        set_=_set_clause(table, insert.excluded),
        where=_changed(table, insert.excluded),
    )
    return stmt.returning(table.c[key])


@dataclass(frozen=True)
class CopyPlan:
    """The PostgreSQL page upsert for one source and column set: stage by COPY, then one upsert.

    ``stage`` creates the session's staging table (``ON COMMIT DELETE ROWS``, so it is empty at the
    start of every page's transaction); ``processors`` are SQLAlchemy's own bind processors.
    """

    stage: str
    copy: str
    upsert: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            p(row[n]) if p is not None else row[n] for n, p in zip(self.names, self.processors, strict=True)
        )


# One plan per table and column set, shared by every source of the table (the source is a column value).
_COPY_PLANS: dict[tuple[str, str, str, tuple[str, ...]], CopyPlan] = {}


def _copy_plan(dialect: Dialect, spec: SourceSpec, names: tuple[str, ...]) -> CopyPlan:
    cache_key = (spec.table.name, spec.key, dialect.driver, names)
    cached = _COPY_PLANS.get(cache_key)
    if cached is not None:
        return cached
    table = spec.table
    stage_name = f"sync_stage_{table.name}"
    quote = dialect.identifier_preparer.quote
    # Identifiers only, all from the model; no value is ever formatted into these statements.
    columns = ", ".join(quote(n) for n in names)
    stage = (
        f"CREATE TEMP TABLE IF NOT EXISTS {quote(stage_name)} ON COMMIT DELETE ROWS"  # noqa: S608
        f" AS SELECT {columns} FROM {quote(table.name)} WITH NO DATA"
    )
    staged = sa_table(stage_name, *[column(n) for n in names])
    insert = postgresql.insert(table).from_select(list(names), select(*staged.c))
    upsert = insert.on_conflict_do_update(
        index_elements=[table.c.source, table.c[spec.key]],
        set_=_set_clause(table, insert.excluded),
        where=_changed(table, insert.excluded),
    )
    # xmax is 0 for a freshly inserted tuple and the locking transaction's id for an updated one.
    stmt = upsert.returning(table.c[spec.key], literal_column("(xmax = 0)"))
    processors = tuple(table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
    copy = f"COPY {quote(stage_name)} ({columns}) FROM STDIN"
    plan = CopyPlan(stage, copy, str(stmt.compile(dialect=dialect)), names, processors)
    _COPY_PLANS[cache_key] = plan
    return plan


def _upsert_postgresql(conn: Connection, spec: SourceSpec, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """COPY the page into a session staging table, then one ``INSERT ... SELECT ... ON CONFLICT``.

    A multi-row ``VALUES`` statement costs the driver a re-parse of its long text on every page (psycopg
    caches only statements of up to 50 parameters), and a per-row statement costs a bind per row;
    COPY sends the rows with the least client CPU.
    """
    plan = _copy_plan(conn.dialect, spec, tuple(rows[0]))
    driver = conn.connection.driver_connection
    with driver.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(plan.stage)
        with cur.copy(plan.copy) as copy:
            for row in rows:
                copy.write_row(plan.values(row))
        cur.execute(plan.upsert)
        returned = cur.fetchall()
    inserted = sum(1 for _, fresh in returned if fresh)
    return inserted, len(returned) - inserted


def _upsert_sqlite(conn: Connection, spec: SourceSpec, rows: list[dict[str, Any]]) -> tuple[int, int]:
    # SQLite has no xmax: learn which keys already exist first. The source's run lock makes this
    # run the only writer of its source's rows, so nothing inserts them between the select and the upsert.
    table = spec.table
    keys = [row[spec.key] for row in rows]
    query = select(table.c[spec.key]).where(spec.rows, table.c[spec.key].in_(keys))
    existing = set(conn.execute(query).scalars())
    returned = conn.execute(_sqlite_statement(spec.table, spec.key), rows).scalars().all()
    inserted = sum(1 for key in returned if key not in existing)
    return inserted, len(returned) - inserted
