"""Fleet scale: N sources on one fleet of workers, measured for lag, cost per run, memory and growth.

    .venv/bin/python bench/fleet_scale.py                                   # scenario A: 500 sources, 30 min
    .venv/bin/python bench/fleet_scale.py --duration 900 --disturb          # scenario B
    .venv/bin/python bench/fleet_scale.py --sources 20 --duration 120 --interval 30   # smoke
    .venv/bin/python bench/fleet_scale.py --memory-only                     # worker RSS at 50, 200, 500

Everything runs on this machine, each piece in a process of its own: a private ``redis-server`` (so
``INFO commandstats`` counts only this fleet: broker, results, locks, breakers, beat), a fresh
PostgreSQL database (migrated, dropped at the end), fleet simulators with ``--latency-ms`` added to
every API request (half WooCommerce shops, half Odoo databases, ``--size`` records each, at most
``--tenants-per-sim`` tenants per process), the sources registered with ``syncworker sources apply``
(credentials as ``file:`` references), two ``celery worker`` nodes x 4 processes on
``sync-incremental``, one ``-c 1`` node on ``sync-full`` and one ``celery beat``.

Warm-up: one incremental run of every source is enqueued by hand and awaited (it reads the whole
catalog: no lag is measured on it), then beat starts, which spreads each source's first tick over the
interval. From then on, for ``--duration`` seconds, a driver edits one record of every source at a
random moment of every interval (the last interval gets no edits, so each edit has a whole interval to
be mirrored) and a poller watches PostgreSQL for each one (``fleet_lag.py``). CPU (``/proc``, process
trees), Redis commands and PostgreSQL transactions are sampled at the start and the end of that window
and divided by the runs that started in it.

``--disturb`` adds scenario B: one shop's upstream hangs for the whole window, and a separate
WooCommerce simulator with ``--big-size`` products (no added latency) is registered as ``big``, whose
full run is enqueued (``syncworker sync big --full``) as the window starts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet_profile  # noqa: E402
from fleet_lag import LagRecorder, summarise  # noqa: E402
from fleet_procs import Processes, rss_mb, tree, tree_cpu_seconds, wait_until  # noqa: E402
from ingest import create_database, drop_database  # noqa: E402

SYNC_TASK = "tasks.sync.sync_source"
TABLES = ("sync_runs", "event_log", "products", "suppliers", "sync_state")
SAMPLE_SECONDS = 30
HUNG_SHOP_FAULT = {"kind": "hang", "hang_seconds": 86400, "rate": 1.0}
FINISHED = ("succeeded", "partial")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def far_cron(now: dt.datetime) -> str:
    """A daily cron twelve hours away: no full run fires during a bench."""
    return f"0 {(now.hour + 12) % 24} * * *"


class Stack:
    """Redis, PostgreSQL, simulators, sources and the Celery processes of one measurement."""

    def __init__(self, args: argparse.Namespace, sources: int, work: Path) -> None:
        self.args = args
        self.count = sources
        self.work = work
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.procs = Processes(work / "logs")
        self.db_url: str | None = None
        self.sources: dict[str, dict[str, Any]] = {}
        self.big: dict[str, Any] | None = None
        self.app: Any = None
        self.pgss = False

    # -- setup -------------------------------------------------------------------------------------

    def start(self) -> None:
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.procs.start(
            "redis",
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env=dict(os.environ),
            cwd=self.work,
        )
        import redis

        self.redis = redis.Redis.from_url(self.redis_url)
        wait_until(self._redis_up, 20, 0.2, "redis-server")
        self.db_url = create_database()
        self.pgss = self._try_pg_stat_statements()
        self._start_simulators()
        if self.args.disturb:
            self._start_big()
        self.env = self._env()
        self._apply_sources()
        os.environ.update(self.env)  # this process enqueues with exactly the workers' configuration
        from worker.celeryapp.app import create_app
        from worker.infra.settings import load_settings

        self.app = create_app(load_settings(_env_file=None))
        self._start_workers()

    def _redis_up(self) -> bool:
        try:
            return bool(self.redis.ping())
        except Exception:
            return False

    def _try_pg_stat_statements(self) -> bool:
        import psycopg

        assert self.db_url is not None
        try:
            with psycopg.connect(self.db_url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
                conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()
        except psycopg.Error:
            return False  # created, but not loaded through shared_preload_libraries: no counts
        return True

    def _start_simulators(self) -> None:
        per = self.args.tenants_per_sim
        woo, odoo = self.count // 2, self.count - self.count // 2
        plans: list[tuple[str, str, int, str, int]] = []
        for kind, total, flag, prefix in (
            ("woo-fleet", woo, "--shops", "shop"),
            ("odoo-fleet", odoo, "--databases", "db"),
        ):
            procs = math.ceil(total / per) if total else 0
            for i in range(procs):
                n = min(per, total - i * per)
                plans.append((kind, flag, n, f"{prefix}{i + 1}", 1 + len(plans) * 10_000))
        for kind, flag, n, prefix, seed in plans:
            cmd = [
                sys.executable,
                "-m",
                "worker.sandbox",
                kind,
                flag,
                str(n),
                "--size",
                str(self.args.size),
                "--latency-ms",
                str(self.args.latency_ms),
                "--prefix",
                prefix,
                "--seed",
                str(seed),
            ]
            self._start_simulator(f"sim-{prefix}", cmd, n)

    def _start_simulator(self, name: str, cmd: list[str], tenants: int) -> None:
        """Start one simulator process and read the sources it prints (a JSON line per tenant)."""
        started = self.procs.start(name, cmd, env=dict(os.environ), cwd=ROOT, stdout_pipe=True)
        assert started.proc.stdout is not None
        got = 0
        while got < tenants:
            line = started.proc.stdout.readline()
            if not line:
                msg = f"simulator {name} exited early (log {started.log})"
                raise RuntimeError(msg)
            if line.startswith("{"):
                source = json.loads(line)
                self.sources[source["name"]] = source
                got += 1

    def _start_big(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "worker.sandbox",
            "woocommerce",
            "--size",
            str(self.args.big_size),
            "--seed",
            "7",
        ]
        started = self.procs.start("sim-big", cmd, env=dict(os.environ), cwd=ROOT, stdout_pipe=True)
        assert started.proc.stdout is not None
        found: dict[str, str] = {}
        while "WOOCOMMERCE_CONSUMER_SECRET" not in found:
            line = started.proc.stdout.readline()
            if not line:
                msg = f"the big simulator exited early (log {started.log})"
                raise RuntimeError(msg)
            if "=" in line and not line.startswith("#"):
                key, _, value = line.strip().partition("=")
                found[key] = value
        self.big = {
            "name": "big",
            "kind": "woocommerce",
            "url": found["WOOCOMMERCE_URL"],
            "options": {},
            "credentials": {
                "consumer_key": found["WOOCOMMERCE_CONSUMER_KEY"],
                "consumer_secret": found["WOOCOMMERCE_CONSUMER_SECRET"],
            },
        }

    def _env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        assert self.db_url is not None
        dropped = ("WOOCOMMERCE_", "ODOO_", "CELERY_", "SYNC_", "REDIS_", "DATABASE_", "SOURCES_", "BEAT_")
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(dropped)},
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": self.db_url,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": f"sw-fleet-{uuid.uuid4().hex[:8]}",
            "EVENT_SPOOL_PATH": str(self.work / "spool" / "events.spool"),
            "SOURCES_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "SYNC_INCREMENTAL_INTERVAL_SECONDS": str(self.args.interval),
            "SYNC_FULL_CRON": far_cron(dt.datetime.now(dt.UTC)),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "console",
            "DEMO_FALLBACK": "false",
        }

    def _apply_sources(self) -> None:
        creds = self.work / "credentials"
        creds.mkdir(exist_ok=True)
        entries = []
        every = list(self.sources.values()) + ([self.big] if self.big else [])
        for source in every:
            refs = {}
            for field, value in source["credentials"].items():
                path = creds / f"{source['name']}.{field}"
                path.write_text(value, encoding="utf-8")
                path.chmod(0o600)
                refs[field] = f"file:credentials/{path.name}"
            entry = {
                "name": source["name"],
                "kind": source["kind"],
                "url": source["url"],
                "credentials": refs,
            }
            if source["options"]:
                entry["options"] = source["options"]
            entries.append(entry)
        declared = self.work / "sources.yaml"
        declared.write_text(yaml.safe_dump({"sources": entries}, sort_keys=False), encoding="utf-8")
        syncworker = str(Path(sys.executable).parent / "syncworker")
        out = self._cli([syncworker, "sources", "apply", str(declared), "--json"])
        created = json.loads(out)
        print(
            "# sources apply: "
            + ", ".join(f"{k}={len(v)}" for k, v in created.items() if isinstance(v, list)),
            file=sys.stderr,
            flush=True,
        )

    def _cli(self, cmd: list[str]) -> str:
        import subprocess

        done = subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False, timeout=600
        )
        if done.returncode != 0:
            msg = f"{' '.join(cmd[1:3])} failed ({done.returncode}): {done.stderr[-2000:]}"
            raise RuntimeError(msg)
        return done.stdout

    def _celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "worker", *args]

    def _start_workers(self) -> None:
        tag = uuid.uuid4().hex[:6]
        for i in range(self.args.inc_nodes):
            cmd = self._celery(
                "worker",
                "-P",
                "prefork",
                "-c",
                str(self.args.inc_concurrency),
                "-Q",
                "sync-incremental",
                "-n",
                f"inc{i + 1}-{tag}@%h",
                "--without-gossip",
                "--without-mingle",
            )
            self.procs.start(f"worker-inc{i + 1}", cmd, env=self.env, cwd=ROOT)
        cmd = self._celery(
            "worker",
            "-P",
            "prefork",
            "-c",
            "1",
            "-Q",
            "sync-full",
            "-n",
            f"full-{tag}@%h",
            "--without-gossip",
            "--without-mingle",
        )
        self.procs.start("worker-full", cmd, env=self.env, cwd=ROOT)

    def start_beat(self) -> None:
        cmd = self._celery(
            "beat", "-s", str(self.work / "beat-schedule"), "--pidfile", str(self.work / "beat.pid")
        )
        self.procs.start("beat", cmd, env=self.env, cwd=ROOT)

    # -- measurements ------------------------------------------------------------------------------

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        assert self.db_url is not None
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return list(conn.execute(query, params).fetchall())

    def enqueue_all(self, names: list[str]) -> None:
        for name in names:
            self.app.send_task(SYNC_TASK, kwargs={"source": name, "full": False}, queue="sync-incremental")

    def finished_sources(self, since_id: int = 0) -> int:
        rows = self.sql(
            "SELECT count(DISTINCT source) FROM sync_runs WHERE id > %s AND mode = 'incremental' "
            "AND status = ANY(%s)",
            (since_id, list(FINISHED)),
        )
        return int(rows[0][0])

    def last_run_id(self) -> int:
        return int(self.sql("SELECT coalesce(max(id), 0) FROM sync_runs")[0][0])

    def redis_calls(self) -> dict[str, int]:
        stats = self.redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def pg_counters(self) -> dict[str, int]:
        name = self.db_url.rpartition("/")[2] if self.db_url else ""
        xacts = self.sql(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
        )[0][0]
        counters = {"transactions": int(xacts)}
        if self.pgss:
            calls = self.sql(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
                (name,),
            )[0][0]
            counters["statements"] = int(calls)
        return counters

    def queue_length(self) -> int:
        return int(self.redis.llen("sync-incremental"))

    def cpu(self) -> dict[str, float]:
        return {
            "workers_incremental": self.procs.cpu("worker-inc"),
            "worker_full": self.procs.cpu("worker-full"),
            "beat": self.procs.cpu("beat"),
            "simulators": self.procs.cpu("sim-"),
            "redis": self.procs.cpu("redis"),
        }

    def backend_cpu(self) -> dict[int, float]:
        """CPU of each live PostgreSQL backend connected to the bench database, by pid."""
        name = self.db_url.rpartition("/")[2] if self.db_url else ""
        pids = [int(p) for (p,) in self.sql("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
        return {pid: tree_cpu_seconds(pid) for pid in pids}

    def worker_rss(self) -> list[dict[str, Any]]:
        rows = []
        for started in self.procs.by_role("worker-"):
            for pid in tree(started.pid):
                mb = rss_mb(pid)
                if mb is not None:
                    rows.append(
                        {"node": started.role, "pid": pid, "main": pid == started.pid, "rss_mb": round(mb, 1)}
                    )
        return rows

    def table_sizes(self) -> dict[str, int]:
        return {t: int(self.sql("SELECT pg_total_relation_size(%s)", (t,))[0][0]) for t in TABLES}

    def runs_between(self, first_id: int, last_id: int) -> list[tuple[Any, ...]]:
        return self.sql(
            "SELECT source, mode, status, duration_seconds FROM sync_runs WHERE id > %s AND id <= %s",
            (first_id, last_id),
        )

    def close(self) -> None:
        try:
            if self.app is not None:
                self.app.close()
        finally:
            self.procs.close()
            if self.db_url:
                drop_database(self.db_url)


# -- scenario ---------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def warm_up(stack: Stack, names: list[str], timeout: float) -> float:
    """One incremental run of each source, enqueued now; returns the seconds it took."""
    started = time.monotonic()
    since = stack.last_run_id()
    stack.enqueue_all(names)
    wait_until(lambda: stack.finished_sources(since) >= len(names), timeout, 2.0, "the warm-up runs")
    return time.monotonic() - started


def deltas(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def run_scenario(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    stack = Stack(args, args.sources, work)
    try:
        setup_started = time.monotonic()
        stack.start()
        names = sorted(stack.sources)
        progress(f"{len(names)} sources registered; warm-up")
        warm = warm_up(stack, names, args.warmup_timeout)
        progress(f"warm-up done in {warm:.0f} s; beat starts, the window opens")
        stack.procs.check_alive()
        hung = None
        if args.disturb:
            hung = next(n for n in names if stack.sources[n]["kind"] == "woocommerce")
            import requests

            requests.post(
                f"{stack.sources[hung]['url']}/__faults__", json=HUNG_SHOP_FAULT, timeout=10
            ).raise_for_status()
        first_id = stack.last_run_id()
        cpu0, redis0, pg0 = stack.cpu(), stack.redis_calls(), stack.pg_counters()
        backends0, tables0 = stack.backend_cpu(), stack.table_sizes()
        t0 = time.time()
        stack.start_beat()
        if args.disturb:
            syncworker = str(Path(sys.executable).parent / "syncworker")
            progress(stack._cli([syncworker, "sync", "big", "--full"]).strip())
        windows = max(1, int(args.duration // args.interval) - 1)
        recorder = LagRecorder(stack.db_url or "", stack.sources, args.interval, seed=args.seed)
        recorder.start(windows, excluded=frozenset({hung} if hung else ()))
        profiler = None
        if args.py_spy:
            seconds = int(min(args.duration, args.profile_seconds))
            node = stack.procs.by_role("worker-inc1")[0]
            profiler = fleet_profile.record(args.py_spy, node.pid, seconds, work / "profile.raw")
        timeline = []
        while time.time() - t0 < args.duration:
            time.sleep(min(SAMPLE_SECONDS, max(0.0, args.duration - (time.time() - t0))))
            stack.procs.check_alive()
            sample = {
                "t": round(time.time() - t0),
                "queue": stack.queue_length(),
                "pending_edits": len(recorder.pending),
                "mirrored": sum(len(v) for v in recorder.lags.values()),
                "runs": stack.last_run_id() - first_id,
            }
            timeline.append(sample)
            progress(json.dumps(sample))
        elapsed = time.time() - t0
        cpu1, redis1, pg1 = stack.cpu(), stack.redis_calls(), stack.pg_counters()
        backends1, tables1 = stack.backend_cpu(), stack.table_sizes()
        # Backends that ended inside the window are missed; the workers keep theirs pooled.
        cpu1["postgres_backends"] = sum(v - backends0.get(pid, 0.0) for pid, v in backends1.items())
        cpu0["postgres_backends"] = 0.0
        last_id = stack.last_run_id()
        # Edits of the last edited interval may still be on their way: give them one more interval.
        deadline = time.time() + (args.interval + 60 if args.drain is None else args.drain)
        while not recorder.drained() and time.time() < deadline:
            time.sleep(2)
        recorder.stop()
        profile = None
        if profiler is not None:
            profiler.wait(timeout=120)
            profile = fleet_profile.summarise(work / "profile.raw")
        runs = stack.runs_between(first_id, last_id)
        result = {
            "sources": len(names),
            "size": args.size,
            "latency_ms": args.latency_ms,
            "interval": args.interval,
            "duration": round(elapsed),
            "disturb": args.disturb,
            "hung_shop": hung,
            "warmup_seconds": round(warm),
            "setup_seconds": round(time.monotonic() - setup_started - elapsed - warm),
            "lag": summarise(recorder.lags, frozenset({hung} if hung else ())),
            "edits_made": recorder.edits_made,
            "edits_unseen": len(recorder.pending),
            "edit_errors": recorder.edit_errors[:5],
            "poll_queries": recorder.poll_queries,
            "runs": summarise_runs(runs),
            "cpu": deltas(cpu1, cpu0),
            "redis": redis_costs(deltas(redis1, redis0)),
            "pg": deltas(pg1, pg0),
            "pg_stat_statements": stack.pgss,
            "timeline": timeline,
            "rss": stack.worker_rss(),
            "tables": tables1,
            "tables_at_start": tables0,
            "profile": profile,
            "source_cache_size": stack.env.get("SOURCE_CACHE_SIZE", "default"),
            "machine": machine_facts(),
            "lags": {k: [round(x, 2) for x in v] for k, v in recorder.lags.items()},
        }
        if args.disturb:
            result["big"] = [
                {"mode": m, "status": s, "fetched": f, "duration": d}
                for m, s, f, d in stack.sql(
                    "SELECT mode, status, fetched, duration_seconds FROM sync_runs "
                    "WHERE source = 'big' ORDER BY id"
                )
            ]
            result["hung_runs"] = Counter(
                s
                for (s,) in stack.sql(
                    "SELECT status FROM sync_runs WHERE source = %s AND id > %s", (hung, first_id)
                )
            )
        return result
    finally:
        stack.close()


def summarise_runs(runs: list[tuple[Any, ...]]) -> dict[str, Any]:
    by = Counter(f"{mode}:{status}" for _, mode, status, _ in runs)
    durations = [
        d for _, mode, status, d in runs if mode == "incremental" and status in FINISHED and d is not None
    ]
    ordered = sorted(durations)
    return {
        "rows": len(runs),
        "incremental": sum(1 for _, m, _, _ in runs if m == "incremental"),
        "incremental_finished": len(durations),
        "by_status": dict(by),
        "duration_p50": statistics.median(ordered) if ordered else None,
        "duration_p95": ordered[int(0.95 * (len(ordered) - 1))] if ordered else None,
        "duration_max": ordered[-1] if ordered else None,
    }


def redis_costs(calls: dict[str, float]) -> dict[str, Any]:
    top = sorted(((k, v) for k, v in calls.items() if v > 0), key=lambda kv: -kv[1])
    return {"total": sum(calls.values()), "top": top[:12]}


def machine_facts() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in load], "python": sys.version.split()[0]}


# -- memory only ------------------------------------------------------------------------------------


def run_memory(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Worker RSS after every source ran twice, for each fleet size (no beat, no lag)."""
    results = []
    for count in args.memory_sources:
        stack = Stack(args, count, work / f"mem-{count}")
        try:
            stack.start()
            names = sorted(stack.sources)
            warm = warm_up(stack, names, args.warmup_timeout)
            again = warm_up(stack, names, args.warmup_timeout)
            rss = stack.worker_rss()
            children = [r["rss_mb"] for r in rss if not r["main"] and r["node"].startswith("worker-inc")]
            mains = [r["rss_mb"] for r in rss if r["main"]]
            results.append(
                {
                    "sources": count,
                    "warmup_seconds": round(warm),
                    "second_round_seconds": round(again),
                    "child_rss_mb_max": max(children),
                    "child_rss_mb_mean": round(statistics.fmean(children), 1),
                    "main_rss_mb_max": max(mains),
                    "rss": rss,
                }
            )
            progress(json.dumps({k: v for k, v in results[-1].items() if k != "rss"}))
        finally:
            stack.close()
    return results


# -- report -----------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def per_day(total_bytes: float, seconds: float) -> tuple[float, float]:
    day = total_bytes / seconds * 86400
    return day / 2**20, day * 365 / 2**30


def report(result: dict[str, Any], command: str) -> str:
    lag, runs, cpu, pg = result["lag"], result["runs"], result["cpu"], result["pg"]
    n_runs = max(1, runs["rows"])
    title = "B (disturbed)" if result["disturb"] else "A"
    lines = [
        f"### Fleet scale, scenario {title}: {result['sources']} sources, interval {result['interval']:g} s, "
        f"{result['duration']} s window",
        "",
        f"`{command}`",
        "",
        f"Machine: {result['machine']['cores']} cores, load average at the end "
        f"{result['machine']['loadavg']}, "
        f"Python {result['machine']['python']}. Upstream latency {result['latency_ms']:g} ms per request, "
        f"{result['size']} records per source. Warm-up (every source's first run) "
        f"{result['warmup_seconds']} s.",
        "",
        "| lag (s), edit to mirror | p50 | p95 | max | mean |",
        "|---|---|---|---|---|",
        f"| fleet-wide ({lag['edits_mirrored']} edits, {lag['sources']} sources) | {fmt(lag['p50'])} | "
        f"{fmt(lag['p95'])} | {fmt(lag['max'])} | {fmt(lag['mean'])} |",
        "",
        f"Per source: median of the per-source p95s {fmt(lag['per_source_p95_median'])} s, p95 of them "
        f"{fmt(lag['per_source_p95_p95'])} s; worst source `{lag['worst_source']}` (p95 "
        f"{fmt(lag['worst_source_p95'])} s, max {fmt(lag['worst_source_max'])} s). "
        f"Edits made {result['edits_made']}, "
        f"not seen in the mirror by the end {result['edits_unseen']}, failed {len(result['edit_errors'])}.",
        "",
        f"Runs started in the window: {runs['rows']} ({runs['incremental']} incremental; "
        f"{', '.join(f'{k} {v}' for k, v in sorted(runs['by_status'].items()))}); "
        f"{runs['rows'] / result['duration']:.2f} runs/s. "
        f"Incremental run duration p50 {fmt(runs['duration_p50'], 2)} s, "
        f"p95 {fmt(runs['duration_p95'], 2)} s, max {fmt(runs['duration_max'], 2)} s. "
        f"Queue length over the window (every {SAMPLE_SECONDS} s): "
        f"{', '.join(str(s['queue']) for s in result['timeline'])}.",
        "",
        "| cost per run | value |",
        "|---|---|",
        f"| incremental workers' CPU (2 nodes, main + children) | "
        f"{cpu['workers_incremental'] / n_runs * 1000:.1f} ms |",
        f"| full worker's CPU | {cpu['worker_full'] / n_runs * 1000:.1f} ms |",
        f"| beat CPU | {cpu['beat'] / n_runs * 1000:.1f} ms |",
        f"| simulators' CPU | {cpu['simulators'] / n_runs * 1000:.1f} ms |",
        f"| redis-server CPU | {cpu['redis'] / n_runs * 1000:.1f} ms |",
        f"| PostgreSQL backends of the bench database | {cpu['postgres_backends'] / n_runs * 1000:.1f} ms |",
        f"| Redis commands | {result['redis']['total'] / n_runs:.1f} |",
    ]
    poll = result["poll_queries"]
    if "statements" in pg:
        lines.append(
            f"| PostgreSQL statements (pg_stat_statements, less the bench's polls) | "
            f"{(pg['statements'] - poll) / n_runs:.1f} |"
        )
    lines.append(
        f"| PostgreSQL transactions (pg_stat_database commit+rollback, less the bench's {poll} polls) | "
        f"{(pg['transactions'] - poll) / n_runs:.1f} |"
    )
    total_cpu = sum(cpu.values())
    lines += [
        "",
        f"CPU over the window, seconds: {', '.join(f'{k} {v:.0f}' for k, v in cpu.items())} "
        f"(the fleet's own processes: {total_cpu / result['duration'] * 100:.0f}% of one core).",
        "Redis commands, top: "
        + ", ".join(f"{k} {v / n_runs:.1f}" for k, v in result["redis"]["top"])
        + " (per run).",
        "",
    ]
    rss = result["rss"]
    children = [r["rss_mb"] for r in rss if not r["main"]]
    mains = [r["rss_mb"] for r in rss if r["main"]]
    lines += [
        f"Worker RSS at the end: children {min(children, default=0):.0f}-{max(children, default=0):.0f} MB, "
        f"main processes {min(mains, default=0):.0f}-{max(mains, default=0):.0f} MB.",
        "",
        "| table | after warm-up | at the end | growth in the window | per day at this rate | per year |",
        "|---|---|---|---|---|---|",
    ]
    for table, size in result["tables"].items():
        grown = size - result["tables_at_start"][table]
        day_mb, year_gb = per_day(grown, result["duration"])
        lines.append(
            f"| {table} | {result['tables_at_start'][table] / 2**20:.2f} MB | {size / 2**20:.2f} MB | "
            f"{grown / 2**20:.2f} MB | {day_mb:.0f} MB | {year_gb:.1f} GB |"
        )
    lines += [
        "",
        "(Growth measured over the window only, before retention; PostgreSQL grows tables in pages, "
        "and updated rows leave dead tuples until vacuum, so small windows are coarse.)",
        "",
    ]
    if result.get("profile"):
        lines += profile_lines(result["profile"])
    if result.get("big") is not None:
        lines += [
            f"Big source runs: {result['big']}. Hung shop `{result['hung_shop']}` runs: "
            f"{dict(result['hung_runs'])}.",
            "",
        ]
    return "\n".join(lines)


def profile_lines(profile: dict[str, Any]) -> list[str]:
    own = ", ".join(f"`{name}` {pct}%" for name, pct in profile["self"][:15])
    ours = [(n, p) for n, p in profile["inclusive"] if "(worker/" in n or "(tasks/" in n]
    lines = [
        f"py-spy, first incremental node ({profile['samples']} samples of running threads); "
        "inclusive share of the node's CPU, project functions:",
        "",
        "| function | inclusive % |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {pct} |" for name, pct in ours[:30]]
    return [*lines, "", f"Self time, top: {own}.", ""]


def memory_report(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "### Worker memory against fleet size",
        "",
        f"`{command}`",
        "",
        "| sources | incremental children RSS max (mean) | main processes RSS max |",
        "|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['sources']} | {r['child_rss_mb_max']:.0f} MB ({r['child_rss_mb_mean']:.0f}) | "
            f"{r['main_rss_mb_max']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=500)
    parser.add_argument("--size", type=int, default=20, help="records per source")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds measured after the warm-up")
    parser.add_argument("--interval", type=float, default=300.0, help="SYNC_INCREMENTAL_INTERVAL_SECONDS")
    parser.add_argument("--warmup-timeout", type=float, default=900.0)
    parser.add_argument("--tenants-per-sim", type=int, default=125)
    parser.add_argument("--inc-nodes", type=int, default=2)
    parser.add_argument("--inc-concurrency", type=int, default=4)
    parser.add_argument("--disturb", action="store_true", help="scenario B: a hung shop and a 100k full run")
    parser.add_argument("--big-size", type=int, default=100_000)
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument("--memory-sources", type=sizes, default=[50, 200, 500])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--drain", type=float, help="seconds to wait for edits after the window (interval + 60)"
    )
    parser.add_argument("--py-spy", help="a py-spy binary: profile the first incremental worker node")
    parser.add_argument("--profile-seconds", type=float, default=300.0)
    parser.add_argument("--report", type=Path, help="where the Markdown goes (default: a temporary file)")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the processes' logs (their folder is printed)"
    )
    args = parser.parse_args()
    command = "python bench/fleet_scale.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    try:
        if args.memory_only:
            results: Any = run_memory(args, work)
            text = memory_report(results, command)
        else:
            results = run_scenario(args, work)
            text = report(results, command)
    except KeyboardInterrupt:
        progress("interrupted: every process was ended and the database dropped")
        return 130
    finally:
        if args.keep_logs:
            progress(f"logs kept in {work / 'logs'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    target = args.report or Path(tempfile.mkdtemp(prefix="fleet-report-")) / "fleet_scale.md"
    target.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(results, default=str), encoding="utf-8")
    print(text)
    progress(f"report written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
