"""History retention benchmark: a 500-source fleet's daily prune on PostgreSQL, day after day.

    .venv/bin/python bench/history_retention.py                  # 1 day kept, 3 simulated days
    .venv/bin/python bench/history_retention.py --kept-days 30 --days 1    # a month of runs kept
    .venv/bin/python bench/history_retention.py --kept-days 30 --days 1 --without-started-index

A fresh database (migrated, dropped afterwards) is filled with SQL: ``--kept-days`` days of runs from
``--sources`` sources every 5 minutes (144,000 a day at 500) and as many breaker-skip events, plus one
older day of each, past the retention. The retention is ``--kept-days`` for both tables, so each
simulated day prunes exactly one day (144,000 runs + 144,000 events). Each day, one by one:

- ``count``:  ``count_prunable`` (what ``syncworker history prune --dry-run`` runs);
- ``prune``:  ``prune_history`` with ``--batch-size``; its longest batch is its longest transaction;
- ``vacuum``: a plain VACUUM (ANALYZE) of both tables (what autovacuum does after the prune);
- a new day of runs and events, to see whether the tables grow or reuse the space freed.

Sizes are ``pg_total_relation_size`` (heap, indexes, TOAST). Prints one JSON line, then a summary.
``--without-started-index`` drops ``ix_sync_runs_started_at`` first, to see what it saves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import create_database, drop_database  # noqa: E402

TICKS_PER_DAY = 288  # every 5 minutes
TABLES = ("sync_runs", "event_log")

# One row per source per tick; each run starts a millisecond after the previous source's, so start
# times are distinct (equal ones would let the B-tree deduplicate and flatter the index size).
FILL_RUNS = """
INSERT INTO sync_runs (source, mode, task_id, status, started_at, finished_at, duration_seconds,
                       fetched, inserted, updated, unchanged, skipped, failed, marked_deleted,
                       fence, serves_through, details)
SELECT 'source-' || lpad(s::text, 3, '0'),
       CASE WHEN mod(t, 288) = 0 THEN 'full' ELSE 'incremental' END,
       md5(t::text || ':' || s::text)::uuid::text, 'succeeded', ts, ts + interval '4 seconds', 4.0,
       100, 0, 3, 97, 0, 0, 0, t, t, '{"pages": 1, "resumed": false}'::jsonb
FROM generate_series(0, %(ticks)s - 1) AS t
CROSS JOIN generate_series(1, %(sources)s) AS s
CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + t * interval '5 minutes' + s * interval '1 ms' AS ts) AS x
ORDER BY t, s
"""
FILL_EVENTS = """
INSERT INTO event_log (event_type, aggregate_id, occurred_at, correlation_id, payload, metadata)
SELECT 'woocommerce.sync.skipped_breaker_open', 'source-' || lpad(s::text, 3, '0'), ts,
       'source-' || lpad(s::text, 3, '0') || ':' || t,
       jsonb_build_object('breaker', 'woocommerce', 'retry_after_seconds', 30.0, 'tick', t),
       jsonb_build_object('service', 'syncworker', 'task_id', md5(t::text || ':' || s::text)::uuid::text)
FROM generate_series(0, %(ticks)s - 1) AS t
CROSS JOIN generate_series(1, %(sources)s) AS s
CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + t * interval '5 minutes' + s * interval '1 ms' AS ts) AS x
ORDER BY t, s
"""


def fill(url: str, table: str, start: dt.datetime, days: float, sources: int) -> None:
    import psycopg

    sql = FILL_RUNS if table == "sync_runs" else FILL_EVENTS
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, {"start": start, "ticks": round(days * TICKS_PER_DAY), "sources": sources})
        conn.execute(f"ANALYZE {table}")


def sizes(url: str) -> dict[str, dict[str, int]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return {
            table: {
                "rows": conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0],  # type: ignore[index]
                "bytes": conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0],  # type: ignore[index]
            }
            for table in TABLES
        }


def vacuum(url: str) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return time.perf_counter() - started


def timed_prune(url: str, now: dt.datetime, retention: dt.timedelta, batch_size: int) -> dict[str, Any]:
    from worker.infra.db import make_engine, make_session_factory
    from worker.sync.retention import count_prunable, prune_history

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    ages = {"runs_older_than": retention, "events_older_than": retention}
    marks: list[float] = []

    def mark() -> bool:
        marks.append(time.perf_counter())  # asked before each batch: the gaps are the batches
        return False

    try:
        started = time.perf_counter()
        counted = count_prunable(sessions, now=now, **ages)
        count_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report = prune_history(sessions, now=now, batch_size=batch_size, should_stop=mark, **ages)
        prune_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    batches = [b - a for a, b in itertools.pairwise(marks)]
    return {
        "count_seconds": round(count_seconds, 3),
        "counted": [counted.runs_deleted, counted.events_deleted],
        "prune_seconds": round(prune_seconds, 3),
        "deleted": [report.runs_deleted, report.events_deleted],
        "batches": report.batches,
        "longest_batch_seconds": round(max(batches, default=0.0), 3),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    url = create_database()
    day = dt.timedelta(days=1)
    retention = dt.timedelta(days=args.kept_days)
    base = dt.datetime.now(dt.UTC)
    try:
        for table in TABLES:
            fill(url, table, base - retention - day, 1, args.sources)  # the day the first prune removes
            fill(url, table, base - retention, args.kept_days, args.sources)
        if args.without_started_index:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP INDEX ix_sync_runs_started_at")
        result: dict[str, Any] = {"sources": args.sources, "kept_days": args.kept_days,
                                  "batch_size": args.batch_size,
                                  "started_at_index": not args.without_started_index,
                                  "before": sizes(url), "days": []}  # fmt: skip
        for n in range(args.days):
            # Day n: the prune at its start removes the day that fell out of the retention, then the
            # day's new runs and events arrive.
            now = base + n * day
            step = timed_prune(url, now, retention, args.batch_size)
            step["after_prune"] = sizes(url)
            step["vacuum_seconds"] = round(vacuum(url), 3)
            step["after_vacuum"] = sizes(url)
            for table in TABLES:
                fill(url, table, now, 1, args.sources)
            step["after_new_day"] = sizes(url)
            result["days"].append(step)
        return result
    finally:
        drop_database(url)


def megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"


def table_line(label: str, counts: dict[str, dict[str, int]]) -> str:
    cells = ", ".join(f"{t} {c['rows']:,} rows {megabytes(c['bytes'])}" for t, c in counts.items())
    return f"  {label}: {cells}"


def summary(r: dict[str, Any]) -> str:
    lines = [
        f"{r['sources']} sources, {r['kept_days']:g} day(s) kept, batch {r['batch_size']}, "
        f"ix_sync_runs_started_at {'present' if r['started_at_index'] else 'dropped'}",
        table_line("before", r["before"]),
    ]
    for n, d in enumerate(r["days"], start=1):
        runs, events = d["deleted"]
        lines += [
            f"day {n}: dry-run count {d['count_seconds']} s; prune {d['prune_seconds']} s for {runs:,} runs "
            f"+ {events:,} events in {d['batches']} batches (longest {d['longest_batch_seconds']} s); "
            f"vacuum {d['vacuum_seconds']} s",
            table_line("after prune", d["after_prune"]),
            table_line("after vacuum", d["after_vacuum"]),
            table_line("after a new day", d["after_new_day"]),
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=500)
    parser.add_argument("--kept-days", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--days", type=int, default=3, help="Days simulated: prune, vacuum, a new day.")
    parser.add_argument("--without-started-index", action="store_true")
    result = measure(parser.parse_args())
    print(json.dumps(result))
    print(summary(result))


if __name__ == "__main__":
    main()
