"""Ingest benchmark: the sync engine vs a naive baseline, WooCommerce simulator -> PostgreSQL.

    .venv/bin/python bench/ingest.py                      # 10k and 100k engine, 10k baseline
    .venv/bin/python bench/ingest.py --sizes 10000 --baseline-sizes 10000

Each variant runs in a fresh subprocess (clean peak-RSS reading) against a fresh PostgreSQL database,
with the simulator (zero latency, no faults) in a process of its own so its catalog does not count.

- engine:   the first ``run_sync`` (no watermark yet: every product, trashed ones and every variation,
            pooled page prefetch, a page's variations fetched concurrently, pages committed on a writer
            thread while the next is prepared, COPY + one INSERT ... SELECT ... ON CONFLICT per page),
            then a full run (re-reads everything, writes nothing, reconciles ids) and a no-op
            incremental run, timed separately.
- baseline: the official ``woocommerce`` client (one connection per request, sequential pages) and
            one ORM lookup-and-merge per row, committed per page.

Rows are products plus variations. Peak memory is the child's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# -- parent: orchestration ------------------------------------------------------------------------


def start_simulator(size: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    cmd = [sys.executable, "-m", "worker.sandbox", "woocommerce", "--size", str(size), "--seed", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    env: dict[str, str] = {}
    assert proc.stdout is not None
    while "WOOCOMMERCE_CONSUMER_SECRET" not in env:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("simulator exited before printing its address")
        if "=" in line and not line.startswith("#"):
            key, _, value = line.strip().partition("=")
            env[key] = value
    return proc, env


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def create_database() -> str:
    import psycopg

    name = f"syncworker_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rpartition("/")[0] + "/" + name
    from worker.infra.db import upgrade_database

    upgrade_database(url)
    return url


def drop_database(url: str) -> None:
    import psycopg

    name = url.rpartition("/")[2]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(mode: str, sim_env: dict[str, str], db_url: str) -> dict[str, Any]:
    env = {**os.environ, **sim_env, "BENCH_DB": db_url}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def variant(size: int, mode: str) -> dict[str, Any]:
    sim, sim_env = start_simulator(size)
    db_url = create_database()
    try:
        result = run_child(mode, {**sim_env, "BENCH_SIM_PID": str(sim.pid)}, db_url)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
        drop_database(db_url)
    return {"size": size, "mode": mode, **result}


# -- children -------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulator_cpu_seconds() -> float:
    # The simulator is one Python process: near one CPU-second per second, it is the bottleneck.
    return process_cpu_seconds(int(os.environ["BENCH_SIM_PID"]))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_settings(spool_dir: str) -> Any:
    from worker.infra.settings import load_settings

    return load_settings(
        _env_file=None,
        database_url=os.environ["BENCH_DB"],
        redis_url=REDIS_URL,
        redis_key_prefix=f"sw-bench-{uuid.uuid4().hex[:8]}",
        event_spool_path=str(Path(spool_dir) / "events.spool"),
        woocommerce_url=os.environ["WOOCOMMERCE_URL"],
        woocommerce_consumer_key=os.environ["WOOCOMMERCE_CONSUMER_KEY"],
        woocommerce_consumer_secret=os.environ["WOOCOMMERCE_CONSUMER_SECRET"],
        log_level="WARNING",
    )


def never() -> bool:
    return False


def child_engine() -> dict[str, Any]:
    import redis

    from worker.breaker import build_breaker
    from worker.infra.db import make_engine, make_session_factory
    from worker.infra.eventlog import EventLog
    from worker.kinds import get_kind
    from worker.kinds.woocommerce.client import WooCommerceClient
    from worker.sync import SyncDeps, SyncSource, run_sync
    from worker.upstream import build_retrying

    with tempfile.TemporaryDirectory() as spool:
        settings = bench_settings(spool)
        engine = make_engine(settings.database_url)
        client_redis = redis.Redis.from_url(settings.redis_url)
        events = EventLog(engine, client_redis, settings)
        breaker = build_breaker("woocommerce", settings, client_redis, events)
        client = WooCommerceClient(settings, breaker, events, build_retrying(settings))
        kind = get_kind("woocommerce")
        deps = SyncDeps(settings, make_session_factory(engine), client_redis, events, breaker, client, kind)

        def timed(full: bool) -> tuple[Any, float]:
            started = time.perf_counter()
            result = run_sync(
                SyncSource.WOOCOMMERCE_PRODUCTS, deps, full=full, task_id=None, should_stop=never
            )
            assert result.status == "succeeded", result.error
            return result, time.perf_counter() - started

        try:
            # The first run has no watermark: it lists everything, the same work as the baseline.
            cpu, sim_cpu = cpu_seconds(), simulator_cpu_seconds()
            initial, seconds = timed(full=False)
            cpu, sim_cpu = cpu_seconds() - cpu, simulator_cpu_seconds() - sim_cpu
            # A full run re-reads everything (nothing changed, nothing written) and reconciles ids.
            full, full_seconds = timed(full=True)
            noop, noop_seconds = timed(full=False)
        finally:
            for key in client_redis.scan_iter(f"{settings.redis_key_prefix}:*"):
                client_redis.delete(key)
    assert full.counts.written == 0 and noop.counts.written == 0
    rows = initial.counts.inserted
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak_rss_mb(), 1), "cpu_s": round(cpu, 1),
            "simulator_cpu_s": round(sim_cpu, 1), "full_seconds": round(full_seconds, 2),
            "noop_seconds": round(noop_seconds, 3), "noop_fetched": noop.counts.fetched}  # fmt: skip


def child_baseline() -> dict[str, Any]:
    import datetime as dt

    from sqlalchemy import select
    from woocommerce import API

    from models import Product
    from worker.infra.db import make_engine, make_session_factory
    from worker.kinds.woocommerce.normalize import normalize_product, normalize_variation
    from worker.sync.hashing import content_hash

    key, secret = os.environ["WOOCOMMERCE_CONSUMER_KEY"], os.environ["WOOCOMMERCE_CONSUMER_SECRET"]
    api = API(url=os.environ["WOOCOMMERCE_URL"], consumer_key=key, consumer_secret=secret, version="wc/v3",
              timeout=60)  # fmt: skip
    # Over plain http the client signs with OAuth 1.0a; the simulator checks the query-string keys.
    auth = {"consumer_key": key, "consumer_secret": secret}
    factory = make_session_factory(make_engine(os.environ["BENCH_DB"]))

    def merge_rows(rows: list[dict[str, Any]]) -> None:
        now = dt.datetime.now(dt.UTC)
        with factory() as session:
            for row in rows:
                values = {**row, "content_hash": content_hash(row), "last_synced_at": now}
                existing = session.scalars(
                    select(Product).where(Product.woo_id == row["woo_id"])
                ).one_or_none()
                first_seen = existing.first_synced_at if existing else now
                key = existing.id if existing else None
                session.merge(Product(id=key, **values, first_synced_at=first_seen))
            session.commit()

    def pages(endpoint: str, **params: Any) -> Any:
        page = 1
        while True:
            query = {"per_page": 100, "page": page, "orderby": "id", "order": "asc", **params, **auth}
            records = api.get(endpoint, params=query).json()
            if not records:
                return
            yield records
            page += 1

    started, rows, cpu, sim_cpu = time.perf_counter(), 0, cpu_seconds(), simulator_cpu_seconds()
    for status in ("any", "trash"):
        for records in pages("products", status=status):
            products = [normalize_product(r) for r in records]
            merge_rows(products)
            rows += len(products)
            for parent in (p["woo_id"] for p in products if p["type"] == "variable"):
                for variations in pages(f"products/{parent}/variations"):
                    merge_rows([normalize_variation(v, parent_id=parent) for v in variations])
                    rows += len(variations)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak_rss_mb(), 1), "cpu_s": round(cpu_seconds() - cpu, 1),
            "simulator_cpu_s": round(simulator_cpu_seconds() - sim_cpu, 1)}  # fmt: skip


# -- report ---------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| variant | products | rows | initial load (s) | rows/s | peak RSS (MB) | CPU s (ours / simulator) "
        "| full re-read (s) | no-op (s) |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        full = f"{r['full_seconds']:.1f}" if "full_seconds" in r else "-"
        noop = f"{r['noop_seconds']:.3f}" if "noop_seconds" in r else "-"
        cells = [r["mode"], f"{r['size']:,}", f"{r['rows']:,}", f"{r['seconds']:.1f}", f"{r['rows_per_s']:,}",
                 f"{r['peak_rss_mb']:.0f}", f"{r['cpu_s']} / {r['simulator_cpu_s']}", full, noop]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--child", choices=("engine", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child_engine() if args.child == "engine" else child_baseline()
        print(json.dumps(result))
        return 0
    results = []
    for size in sorted(set(args.sizes) | set(args.baseline_sizes)):
        if size in args.sizes:
            results.append(variant(size, "engine"))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if size in args.baseline_sizes:
            results.append(variant(size, "baseline"))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
