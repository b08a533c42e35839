"""Incremental checks: what a run costs when little or nothing changed upstream.

    .venv/bin/python bench/incremental_checks.py                       # Woo 10k and 100k, Odoo 10k
    .venv/bin/python bench/incremental_checks.py --sizes 10000 --odoo-sizes 10000
    .venv/bin/python bench/incremental_checks.py --compare old.jsonl new.jsonl   # markdown table

For each size: the simulator (its own process, zero latency, no faults, seed 1) and a fresh PostgreSQL
database (migrated, dropped afterwards); one full run fills the mirror, then, measured one by one:

- ``noop_incremental``: an incremental run with nothing changed upstream;
- ``noop_full``:        a full run with nothing changed upstream;
- ``edit10_incremental``: 10 records edited in the simulator (a new name each), then an incremental
                          run; ``mirrored`` counts the edited records whose new name is in the mirror.

Requests are counted at the client's ``requests.Session`` (passed to the client as ``session=``, so
retries count too), by kind. Each measurement is one JSON line on stdout with the git commit of the
tree it ran from (``worker`` is imported from the tree holding this file), so the same file run in two
checkouts gives two comparable files; ``--compare`` turns them into a table with ratios.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
EDITS = 10
STEPS = ("initial_full", "noop_incremental", "noop_full", "edit10_incremental")


# -- the simulator process ------------------------------------------------------------------------


def serve(upstream: str, size: int) -> None:
    """Run one simulator; print its settings, then answer ``edit N``, ``delete N`` and ``ids`` lines on
    stdin with JSON (``delete`` and ``ids``: WooCommerce only)."""
    from worker.sandbox.__main__ import describe
    from worker.sandbox.odoo import OdooSimulator
    from worker.sandbox.woocommerce import WooCommerceSimulator

    sim = WooCommerceSimulator(1, size) if upstream == "woocommerce" else OdooSimulator(1, size)
    with sim:
        print("\n".join(describe(sim)), flush=True)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "edit":
                print(json.dumps(edit(sim, upstream, int(arg))), flush=True)
            elif command == "delete":
                ids = [p["id"] for p in sim.catalog.iter_products()]
                gone = ids[:: max(1, len(ids) // int(arg))][: int(arg)]
                for record_id in gone:
                    sim.catalog.delete(record_id)
                print(json.dumps({"deleted": gone}), flush=True)
            elif command == "ids":
                expected = sorted(int(r["id"]) for r in sim.catalog.expected_rows())
                print(json.dumps({"ids": expected}), flush=True)
            else:
                break


def edit(sim: Any, upstream: str, count: int) -> dict[str, str]:
    """Rename ``count`` records spread over the catalog; returns ``{id: new name}``."""
    if upstream == "woocommerce":
        ids = [p["id"] for p in sim.catalog.iter_products(include_trash=False)]
    else:
        ids = [p["id"] for p in sim.catalog.suppliers() if p.get("active", True)]
    step = max(1, len(ids) // count)
    names = {}
    for record_id in ids[::step][:count]:
        name = f"Edited {record_id} {uuid.uuid4().hex[:6]}"
        sim.catalog.change(record_id, name=name)
        names[str(record_id)] = name
    return names


class SimulatorProcess:
    def __init__(self, upstream: str, size: int) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", upstream, "--size", str(size)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.env: dict[str, str] = {}
        assert self.proc.stdout is not None
        while not any(k in self.env for k in ("WOOCOMMERCE_CONSUMER_SECRET", "ODOO_API_KEY")):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("simulator exited before printing its settings")
            if "=" in line and not line.startswith("#"):
                key, _, value = line.strip().partition("=")
                self.env[key] = value

    def edit(self, count: int) -> dict[str, str]:
        return dict(self.ask(f"edit {count}"))

    def ask(self, command: str) -> Any:
        """Send one command line; its JSON answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        while line and not line.startswith("{"):  # the settings' trailing comment lines
            line = self.proc.stdout.readline()
        return json.loads(line)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# -- counting requests ----------------------------------------------------------------------------


def woo_kind(method: str, url: str, body: Any) -> str:
    parts = urlsplit(url)
    path = re.sub(r"/\d+", "/{id}", parts.path.split("/wc/v3", 1)[-1])
    query = parse_qs(parts.query)
    marks = [f"status={query['status'][0]}"] if "status" in query else []
    marks += [m for m in ("_fields", "include", "modified_after", "modified_before") if m in query]
    if query.get("order") == ["desc"]:
        marks.append("order=desc")
    return f"{method} {path}" + (f" [{' '.join(marks)}]" if marks else "")


def odoo_kind(method: str, url: str, body: Any) -> str:
    path = urlsplit(url).path
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    if "<methodName>" in text:
        rpc = re.search(r"<methodName>(\w+)</methodName>", text)
        name = rpc.group(1) if rpc else "?"
        if name == "execute_kw":
            strings = re.findall(r"<string>([\w.]+)</string>", text)
            name = next((s for s in strings[2:] if "." not in s), name)
        return f"{path} {name}"
    return path


class RequestCounter:
    """Counts every request a session sends, by kind; thread-safe (the client prefetches pages)."""

    def __init__(self, classify: Any) -> None:
        self.classify = classify
        self.kinds: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def attach(self, session: Any) -> Any:
        send = session.send

        def counted(request: Any, **kwargs: Any) -> Any:
            kind = self.classify(request.method, request.url, request.body)
            with self.lock:
                self.kinds[kind] += 1
            return send(request, **kwargs)

        session.send = counted
        return session

    def take(self) -> dict[str, int]:
        with self.lock:
            kinds, self.kinds = dict(self.kinds), collections.Counter()
        return kinds


# -- one size, one upstream -----------------------------------------------------------------------


# The scratch database helpers are the ingest benchmark's (this directory is on sys.path when run).
from ingest import create_database, drop_database  # noqa: E402


def git_commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "worker", "models"],
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("+dirty" if dirty else "")


def never() -> bool:
    return False


def bench_upstream(upstream: str, size: int, commit: str) -> None:
    import redis
    from sqlalchemy import text

    from worker.breaker import build_breaker
    from worker.infra.db import make_engine, make_session_factory
    from worker.infra.eventlog import EventLog
    from worker.infra.settings import load_settings
    from worker.kinds import get_kind
    from worker.kinds.odoo.client import OdooClient
    from worker.kinds.woocommerce.client import WooCommerceClient
    from worker.sync import SyncDeps, SyncSource, run_sync
    from worker.upstream import build_retrying
    from worker.upstream.http import build_session

    sim = SimulatorProcess(upstream, size)
    db_url = create_database()
    spool = tempfile.TemporaryDirectory()
    client_redis = None
    settings = None
    try:
        env = {k.lower(): v for k, v in sim.env.items()}
        settings = load_settings(
            _env_file=None, database_url=db_url, redis_url=REDIS_URL,
            redis_key_prefix=f"sw-bench-{uuid.uuid4().hex[:8]}",
            event_spool_path=str(Path(spool.name) / "events.spool"), log_level="WARNING", **env,
        )  # fmt: skip
        engine = make_engine(settings.database_url)
        client_redis = redis.Redis.from_url(settings.redis_url)
        events = EventLog(engine, client_redis, settings)
        breaker = build_breaker(upstream, settings, client_redis, events)
        counter = RequestCounter(woo_kind if upstream == "woocommerce" else odoo_kind)
        session = counter.attach(build_session(settings))
        client_type = WooCommerceClient if upstream == "woocommerce" else OdooClient
        client = client_type(settings, breaker, events, build_retrying(settings), session=session)
        kind = get_kind(upstream)
        deps = SyncDeps(settings, make_session_factory(engine), client_redis, events, breaker, client, kind)
        source = SyncSource.WOOCOMMERCE_PRODUCTS if upstream == "woocommerce" else SyncSource.ODOO_SUPPLIERS
        table, key = ("products", "woo_id") if upstream == "woocommerce" else ("suppliers", "odoo_id")

        def measure(step: str, *, full: bool, edited: dict[str, str] | None = None) -> None:
            counter.take()
            started = time.perf_counter()
            result = run_sync(source, deps, full=full, task_id=None, should_stop=never)
            seconds = time.perf_counter() - started
            requests = counter.take()
            counts = result.counts
            line: dict[str, Any] = {
                "commit": commit, "upstream": upstream, "size": size, "step": step,
                "status": str(result.status), "error": result.error, "requests": sum(requests.values()),
                "seconds": round(seconds, 3), "written": counts.written, "inserted": counts.inserted,
                "updated": counts.updated, "marked_deleted": counts.marked_deleted,
                "fetched": counts.fetched, "unchanged": counts.unchanged, "skipped": counts.skipped,
                "requests_by_kind": dict(sorted(requests.items())),
            }  # fmt: skip
            if edited is not None:
                query = text(f"SELECT {key}, name FROM {table} WHERE {key} = ANY(:ids)")
                with engine.connect() as conn:
                    rows = conn.execute(query, {"ids": [int(i) for i in edited]}).all()
                line["edited"] = len(edited)
                line["mirrored"] = sum(1 for rid, name in rows if edited.get(str(rid)) == name)
            print(json.dumps(line), flush=True)

        measure("initial_full", full=True)
        measure("noop_incremental", full=False)
        measure("noop_full", full=True)
        time.sleep(1.1)  # upstream timestamps have whole seconds: edit after the last run's second
        measure("edit10_incremental", full=False, edited=sim.edit(EDITS))
    finally:
        sim.close()
        if client_redis is not None and settings is not None:
            for redis_key in client_redis.scan_iter(f"{settings.redis_key_prefix}:*"):
                client_redis.delete(redis_key)
        drop_database(db_url)
        spool.cleanup()


# -- comparing two runs ---------------------------------------------------------------------------


def load(path: str) -> dict[tuple[str, int, str], dict[str, Any]]:
    lines = [json.loads(x) for x in Path(path).read_text().splitlines() if x.startswith("{")]
    return {(r["upstream"], r["size"], r["step"]): r for r in lines}


def compare(old_path: str, new_path: str) -> str:
    old, new = load(old_path), load(new_path)
    commits = {r["commit"] for r in old.values()}, {r["commit"] for r in new.values()}
    lines = [
        f"old: {', '.join(sorted(commits[0]))}; new: {', '.join(sorted(commits[1]))}",
        "",
        "| upstream | size | run | requests old | requests new | new/old | seconds old | seconds new "
        "| new/old | written old | written new | edited mirrored old / new |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in sorted(new, key=lambda k: (k[0] != "woocommerce", k[1], STEPS.index(k[2]))):
        n, o = new[k], old.get(k)
        if o is None:
            continue

        def ratio(a: float, b: float) -> str:
            return f"{b / a:.2f}" if a else "-"

        mirrored = f"{o['mirrored']} / {n['mirrored']}" if "mirrored" in n else ""
        cells = [k[0], f"{k[1]:,}", k[2], f"{o['requests']:,}", f"{n['requests']:,}",
                 ratio(o["requests"], n["requests"]), f"{o['seconds']:.2f}", f"{n['seconds']:.2f}",
                 ratio(o["seconds"], n["seconds"]), f"{o['written']:,}", f"{n['written']:,}",
                 mirrored]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="WooCommerce catalog sizes")
    parser.add_argument("--odoo-sizes", default="10000", help="Odoo partner counts ('' for none)")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="JSON-line files to tabulate")
    parser.add_argument("--serve", choices=("woocommerce", "odoo"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.size)
        return 0
    if args.compare:
        print(compare(*args.compare))
        return 0
    commit = git_commit()
    for size in [int(s) for s in args.sizes.split(",") if s]:
        bench_upstream("woocommerce", size, commit)
    for size in [int(s) for s in args.odoo_sizes.split(",") if s]:
        bench_upstream("odoo", size, commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
