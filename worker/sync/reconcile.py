"""Mark records that no longer exist upstream as deleted (``deleted_at``); never delete a row.

The upstream id set is streamed page by page into a temporary table on the reconciling connection
and compared there, so memory stays flat however large the catalog: a Python set of 100k ids would
cost several megabytes and grow with the catalog, a sorted-merge of two streams would tie the
comparison to upstream's ordering guarantees. An empty id set never marks anything: an unreadable or
empty listing says nothing about what was deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from worker.sync.sources import SourceSpec


def _seen_table() -> Table:
    # A fresh MetaData each time: the temporary table lives only on the reconciling connection.
    return Table(
        "sync_seen_ids", MetaData(), Column("id", BigInteger, primary_key=True), prefixes=["TEMPORARY"]
    )


def _insert_ignoring_duplicates(conn: Connection, seen: Table, ids: Sequence[int]) -> None:
    # A listing that shifts while it is paged can repeat an id on two pages.
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(seen).on_conflict_do_nothing(), [{"id": int(i)} for i in ids])


def _collect(
    conn: Connection, id_batches: Iterable[Sequence[int]], between_batches: Callable[[], None]
) -> Table | None:
    """Stream the upstream ids into the connection's temporary table; None if there were none."""
    seen = _seen_table()
    # No try/finally around the comparison: a DROP in an aborted PostgreSQL transaction would only mask
    # the error. The rollback removes the table there; pysqlite runs DDL outside the transaction, so a
    # table left on a pooled SQLite connection by a failed comparison is reused and emptied here.
    seen.create(conn, checkfirst=True)
    conn.execute(delete(seen))
    for ids in id_batches:
        if ids:
            _insert_ignoring_duplicates(conn, seen, ids)
        between_batches()
    if conn.execute(select(func.count()).select_from(seen)).scalar_one():
        return seen
    seen.drop(conn)
    return None


def _gone(spec: SourceSpec, seen: Table) -> Any:
    table = spec.table
    return ~exists(select(seen.c.id).where(seen.c.id == table.c[spec.key]))


def mark_missing(
    conn: Connection,
    spec: SourceSpec,
    id_batches: Iterable[Sequence[int]],
    now: dt.datetime,
    *,
    scope: Sequence[Any] = (),
    between_batches: Callable[[], None] = lambda: None,
) -> int | None:
    """Mark live rows (within ``scope``) whose key is not among ``id_batches``; None if upstream had none.

    ``between_batches`` runs after each batch (to renew the lock or stop); an exception from it, or
    from the id stream, abandons the comparison without marking anything.
    """
    seen = _collect(conn, id_batches, between_batches)
    if seen is None:
        return None
    table = spec.table
    live = (spec.rows, table.c.deleted_at.is_(None))
    stmt = update(table).where(*live, _gone(spec, seen), *scope).values(deleted_at=now)
    marked = int(conn.execute(stmt).rowcount)
    seen.drop(conn)
    return marked


def missing_keys(
    conn: Connection,
    spec: SourceSpec,
    id_batches: Iterable[Sequence[int]],
    *,
    scope: Sequence[Any] = (),
    between_batches: Callable[[], None] = lambda: None,
) -> list[int] | None:
    """Keys of live rows (within ``scope``) not among ``id_batches``: candidates, not yet marked."""
    seen = _collect(conn, id_batches, between_batches)
    if seen is None:
        return None
    table = spec.table
    key = table.c[spec.key]
    query = (
        select(key).where(spec.rows, table.c.deleted_at.is_(None), _gone(spec, seen), *scope).order_by(key)
    )
    keys = [int(k) for k in conn.execute(query).scalars()]
    seen.drop(conn)
    return keys


def mark_keys_deleted(conn: Connection, spec: SourceSpec, keys: Sequence[int], now: dt.datetime) -> int:
    """Mark these live rows deleted (upstream confirmed each one gone)."""
    table = spec.table
    marked = 0
    for start in range(0, len(keys), 1000):
        chunk = [int(k) for k in keys[start : start + 1000]]
        stmt = update(table).where(spec.rows, table.c[spec.key].in_(chunk), table.c.deleted_at.is_(None))
        marked += int(conn.execute(stmt.values(deleted_at=now)).rowcount)
    return marked


def mark_orphaned_variations(conn: Connection, spec: SourceSpec, now: dt.datetime) -> int:
    """Variations of a product marked deleted go with it (the variations listing of a gone parent 404s)."""
    table = spec.table
    parent = aliased(table)
    dead_parent = exists(
        select(parent.c.woo_id).where(
            parent.c.source == table.c.source,
            parent.c.woo_id == table.c.parent_woo_id,
            parent.c.deleted_at.is_not(None),
        )
    )
    variations = (spec.rows, table.c.parent_woo_id.is_not(None), table.c.deleted_at.is_(None))
    stmt = update(table).where(*variations, dead_parent)
    return int(conn.execute(stmt.values(deleted_at=now)).rowcount)


def mark_missing_variations(
    conn: Connection, spec: SourceSpec, parent_id: int, seen_ids: Collection[int], now: dt.datetime
) -> int:
    """Mark a parent's local variations absent from its complete, non-empty variations listing."""
    if not seen_ids:
        return 0
    table = spec.table
    stmt = update(table).where(
        spec.rows,
        table.c.parent_woo_id == parent_id,
        table.c.deleted_at.is_(None),
        table.c.woo_id.not_in(list(seen_ids)),
    )
    return int(conn.execute(stmt.values(deleted_at=now)).rowcount)
