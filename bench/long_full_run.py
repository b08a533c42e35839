"""A full run longer than Celery's soft time limit finishes across deliveries, deletions included.

    .venv/bin/python bench/long_full_run.py                          # 100,000 products, soft limit 60 s
    .venv/bin/python bench/long_full_run.py --size 20000 --soft-limit 15 --delete 200

A real ``celery worker`` (prefork, one process, the ``sync-full`` queue) against the WooCommerce
simulator in its own process and a fresh PostgreSQL database (migrated, dropped afterwards), with
``CELERY_TASK_SOFT_TIME_LIMIT`` set low. Two full runs, each enqueued once: the first fills the mirror,
then ``--delete`` products are force-deleted upstream and the second must find them; a third full run
has ``--delete`` more deleted between its first and second delivery, so every page after them shifts
under the resumed listing (the products that slide onto pages already read must still reach the
mirror). For each, one JSON
line: the deliveries the message took (``sync_runs`` rows of its task id), how each ended, the seconds
from enqueue to the end, records written and marked deleted, and whether the mirror's live ids equal
upstream's afterwards. The run is not timed against anything; it proves the run completes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from incremental_checks import SimulatorProcess  # noqa: E402
from ingest import create_database, drop_database  # noqa: E402

REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
FINAL = ("SUCCESS", "FAILURE", "PARTIAL", "SKIPPED", "DEFERRED", "INTERRUPTED")


def free_redis_db() -> str:
    import redis

    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_BASE}/{db}")
        try:
            if client.set("syncworker-test:claim", "bench", nx=True, ex=7200) and client.dbsize() == 1:
                return f"{REDIS_BASE}/{db}"
        finally:
            client.close()
    raise RuntimeError("no empty Redis database to run in")


def worker_env(sim_env: dict[str, str], db_url: str, redis_url: str, soft: int, spool: str) -> dict[str, str]:
    hard = soft + max(10, soft // 2)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WOOCOMMERCE_", "ODOO_", "CELERY_"))},
        **sim_env,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"sw-bench-{uuid.uuid4().hex[:8]}",
        "EVENT_SPOOL_PATH": spool,
        "CELERY_TASK_SOFT_TIME_LIMIT": str(soft),
        "CELERY_TASK_TIME_LIMIT": str(hard),
        "CELERY_VISIBILITY_TIMEOUT": str(hard + 30),
        "WOOCOMMERCE_BREAKER__OPEN_MAX_SECONDS": str(min(300, hard + 20)),
        "ODOO_BREAKER__OPEN_MAX_SECONDS": str(min(300, hard + 20)),
        "RETRY_AFTER_CAP_SECONDS": str(min(300, hard + 20)),
        "SYNC_LOCK_TTL_SECONDS": "15",  # the default now; set so an older tree runs the same config
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "console",
    }


def deliveries(engine: Any, task_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    query = text("SELECT * FROM sync_runs WHERE task_id = :t ORDER BY id")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query, {"t": task_id}).mappings()]


def live_ids(engine: Any) -> list[int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT woo_id FROM products WHERE deleted_at IS NULL")).scalars()
        return sorted(int(i) for i in rows)


def full_run(
    app: Any, engine: Any, sim: SimulatorProcess, step: str, size: int, soft: int, midway: int = 0
) -> dict[str, Any]:
    """One full run; with ``midway``, that many products are deleted once its first delivery ended."""
    started = time.monotonic()
    result = app.send_task("tasks.sync.sync_source", kwargs={"source": "woocommerce-products", "full": True},
                           queue="sync-full")  # fmt: skip
    deleted: list[int] = []
    while result.state not in FINAL:
        if (
            midway
            and not deleted
            and any(r["status"] == "interrupted" for r in deliveries(engine, result.id))
        ):
            # Between two deliveries: every later page of the listing shifts under the resumed pass.
            deleted = sim.ask(f"delete {midway}")["deleted"]
        time.sleep(0.5)
    seconds = time.monotonic() - started
    rows = deliveries(engine, result.id)
    expected = sim.ask("ids")["ids"]
    mirrored = live_ids(engine)
    return {
        "step": step, "size": size, "soft_limit": soft, "state": result.state, "seconds": round(seconds, 1),
        "deliveries": len(rows), "statuses": [r["status"] for r in rows],
        "inserted": sum(r["inserted"] for r in rows), "updated": sum(r["updated"] for r in rows),
        "marked_deleted": sum(r["marked_deleted"] for r in rows),
        "mirror_equals_upstream": mirrored == expected,
        "upstream_ids": len(expected), "mirrored_ids": len(mirrored), "deleted_midway": len(deleted),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--soft-limit", type=int, default=60)
    parser.add_argument("--delete", type=int, default=1000)
    args = parser.parse_args()

    import redis

    from worker.celeryapp.app import create_app
    from worker.infra.db import make_engine
    from worker.infra.settings import load_settings

    sim = SimulatorProcess("woocommerce", args.size)
    db_url = create_database()
    redis_url = free_redis_db()
    spool = tempfile.TemporaryDirectory()
    env = worker_env(sim.env, db_url, redis_url, args.soft_limit, str(Path(spool.name) / "events.spool"))
    log = Path(spool.name) / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-P", "prefork", "-c", "1",
           "-Q", "sync-full", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h",
           "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    engine = make_engine(db_url)
    os.environ.update(env)  # this process enqueues with exactly the worker's configuration
    app = create_app(load_settings(_env_file=None))
    try:
        print(json.dumps(full_run(app, engine, sim, "initial_full", args.size, args.soft_limit)), flush=True)
        deleted = sim.ask(f"delete {args.delete}")["deleted"]
        line = full_run(app, engine, sim, "full_after_deletions", args.size, args.soft_limit)
        print(json.dumps({**line, "deleted_upstream": len(deleted)}), flush=True)
        line = full_run(app, engine, sim, "full_deletions_midway", args.size, args.soft_limit, args.delete)
        print(json.dumps(line), flush=True)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
        app.close()
        engine.dispose()
        sim.close()
        drop_database(db_url)
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        client.close()
        spool.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
