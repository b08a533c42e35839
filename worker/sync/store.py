"""One ``INSERT ... ON CONFLICT DO UPDATE`` per page, writing only rows whose content changed.

The conflict update is guarded by ``content_hash IS DISTINCT`` (or a tombstone to clear), so an
unchanged record is not rewritten at all: no new row version, no ``last_synced_at`` bump, and a
no-op run writes zero rows. ``first_synced_at`` is only ever set by the insert.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, literal_column, or_, select
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
    prepared = prepare_rows(spec, rows, now)
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


def _upsert_postgresql(conn: Connection, spec: SourceSpec, rows: list[dict[str, Any]]) -> tuple[int, int]:
    returned = conn.execute(_statement("postgresql", spec), rows).all()
    inserted = sum(1 for _, fresh in returned if fresh)
    return inserted, len(returned) - inserted


def _upsert_sqlite(conn: Connection, spec: SourceSpec, rows: list[dict[str, Any]]) -> tuple[int, int]:
    # SQLite has no xmax: learn which keys already exist first. The source's run lock makes this
    # run the only writer of the table, so nothing inserts between the select and the upsert.
    table = spec.table
    keys = [row[spec.key] for row in rows]
    existing = set(conn.execute(select(table.c[spec.key]).where(table.c[spec.key].in_(keys))).scalars())
    returned = conn.execute(_statement("sqlite", spec), rows).scalars().all()
    inserted = sum(1 for key in returned if key not in existing)
    return inserted, len(returned) - inserted
