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

from sqlalchemy import Connection, Dialect, Table, bindparam, literal_column, or_, select
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
        stamped.update(first_synced_at=now, last_synced_at=now, deleted_at=None)
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
def _statement(dialect: str, spec: SourceSpec) -> Any:
    """The page upsert, built once per dialect and source.

    Executed with the page's rows as parameters, SQLAlchemy's "insertmanyvalues" sends it as one
    multi-row ``INSERT ... VALUES (...), (...) ON CONFLICT ... RETURNING`` per page, from a compiled
    form that is cached (a ``.values(rows)`` statement is recompiled for every page).
    """
    table = spec.table
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    stmt = insert.on_conflict_do_update(
        index_elements=[table.c[spec.key]],
        set_=_set_clause(table, insert.excluded),
        where=_changed(table, insert.excluded),
    )
    if dialect == "postgresql":
        # xmax is 0 for a freshly inserted tuple and the locking transaction's id for an updated one.
        return stmt.returning(table.c[spec.key], literal_column("(xmax = 0)"))
    return stmt.returning(table.c[spec.key])


@dataclass(frozen=True)
class RowStatement:
    """The page upsert for one row, as psycopg takes it: SQL text and each column's bind processor."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        pairs = list(zip(self.names, self.processors, strict=True))
        return [{n: (p(row[n]) if p is not None else row[n]) for n, p in pairs} for row in rows]


_ROW_STATEMENTS: dict[tuple[SourceSpec, str, tuple[str, ...]], RowStatement] = {}


def _row_statement(dialect: Dialect, spec: SourceSpec, names: tuple[str, ...]) -> RowStatement:
    """Compiled once per source and column set, with SQLAlchemy's own bind processing per column."""
    cache_key = (spec, dialect.driver, names)
    cached = _ROW_STATEMENTS.get(cache_key)
    if cached is not None:
        return cached
    table = spec.table
    insert = postgresql.insert(table).values({n: bindparam(n, type_=table.c[n].type) for n in names})
    stmt = insert.on_conflict_do_update(
        index_elements=[table.c[spec.key]],
        set_=_set_clause(table, insert.excluded),
        where=_changed(table, insert.excluded),
    ).returning(table.c[spec.key], literal_column("(xmax = 0)"))
    processors = tuple(table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names)
    compiled = RowStatement(str(stmt.compile(dialect=dialect)), names, processors)
    _ROW_STATEMENTS[cache_key] = compiled
    return compiled


def _upsert_postgresql(conn: Connection, spec: SourceSpec, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """One short statement executed per row, pipelined by psycopg in one round trip.

    A multi-row ``VALUES`` statement is as fast on the server, but psycopg re-parses its text on every
    page (it only caches statements of up to 50 parameters), which cost more client CPU than the
    rest of the write. This one is parsed once and, after a few pages, prepared on the server.
    """
    statement = _row_statement(conn.dialect, spec, tuple(rows[0]))
    driver = conn.connection.driver_connection
    inserted = updated = 0
    with driver.cursor() as cur:  # type: ignore[union-attr]
        cur.executemany(statement.sql, statement.parameters(rows), returning=True)
        while True:
            for _, fresh in cur.fetchall():
                inserted += 1 if fresh else 0
                updated += 0 if fresh else 1
            if not cur.nextset():
                break
    return inserted, updated


def _upsert_sqlite(conn: Connection, spec: SourceSpec, rows: list[dict[str, Any]]) -> tuple[int, int]:
    # SQLite has no xmax: learn which keys already exist first. The source's run lock makes this
    # run the only writer of the table, so nothing inserts between the select and the upsert.
    table = spec.table
    keys = [row[spec.key] for row in rows]
    existing = set(conn.execute(select(table.c[spec.key]).where(table.c[spec.key].in_(keys))).scalars())
    returned = conn.execute(_statement("sqlite", spec), rows).scalars().all()
    inserted = sum(1 for key in returned if key not in existing)
    return inserted, len(returned) - inserted
