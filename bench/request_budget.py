"""Request budget per upstream host: four shops behind one host that throttles above an unannounced rate.

    .venv/bin/python bench/request_budget.py --out budget.json                       # the three arms
    .venv/bin/python bench/request_budget.py --arms none,celery --out budget.json
    .venv/bin/python bench/request_budget.py --hidden-rate 20 --products 3500 --duration 600

One fleet simulator (its own process) serves 4 WooCommerce shops on one host and port, with
``--latency-ms`` added to every request it lets through and a hidden token bucket in front of all of
them (``--hidden-rate`` H requests per second, burst ``--burst``): above it the host answers its own
429 page, ``--retry-after-share`` of them with ``Retry-After: --retry-after``. Each shop has
``--products`` products (variable ones cost one variations call each), so a full sync of all 4 takes a
couple of minutes at H. Two ``celery worker`` nodes x 4 processes consume ``sync-full``; the 4 shops
are registered as sources and each one's full run is enqueued once. Three arms run one after another,
each on a fresh simulator (same seeds, same catalogs), PostgreSQL database and private ``redis-server``:

- ``none``:   no budget (``WOOCOMMERCE_BUDGET__CEILING=0``);
- ``celery``: Celery's per-worker rate limit at the same total, applied per request: each of the 8
              processes holds its own kombu ``TokenBucket`` at total/8 requests per second
              (``bench/request_budget_app.py``), budget off;
- ``budget``: the fleet budget (``WOOCOMMERCE_BUDGET__CEILING=<total>``).

The total is a ceiling an operator who does not know H would set: ``--ceiling`` (default 2.5 x H). Per
arm, from the host's arrival log: requests, 429s (with and without Retry-After), the 429 share after the
first adaptation (requests arriving 10 s or more after the first 429), useful throughput (2xx answers
per second from the enqueue to the last request, and as a share of H); from the database: seconds until
all 4 runs ended, how each ended (``sync_runs``) and breaker openings (``event_log``). A table goes to
stdout and every number (a per-second timeline too) to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from fleet_scale import Stack, machine_facts, progress  # noqa: E402

SYNC_TASK = "tasks.sync.sync_source"
FULL_QUEUE = "sync-full"
SHOPS = 4
ARMS = ("none", "celery", "budget")
# Task states a full run's message ends in (a resumable interruption is requeued, not final).
FINAL = ("SUCCESS", "FAILURE", "PARTIAL", "SKIPPED", "DEFERRED", "INTERRUPTED")
ADAPTATION_SECONDS = 10.0
ENDINGS = ("succeeded", "partial", "interrupted", "failed")
TARGET_429_SHARE = 0.01
TARGET_RATE_SHARE = 0.80


class BudgetStack(Stack):
    """``fleet_scale``'s stack with one throttling fleet of 4 shops and 2 full-run nodes, per arm."""

    def __init__(self, args: argparse.Namespace, arm: str, work: Path) -> None:
        super().__init__(args, SHOPS, work)
        self.arm = arm
        self.throttle_url = ""

    def _start_simulators(self) -> None:
        a = self.args
        cmd = [sys.executable, "-m", "worker.sandbox", "woo-fleet", "--shops", str(SHOPS),
               "--size", str(a.products), "--latency-ms", str(a.latency_ms), "--prefix", "shop",
               "--seed", "1", "--throttle-rate", str(a.hidden_rate), "--throttle-burst", str(a.burst),
               "--throttle-retry-after-share", str(a.retry_after_share),
               "--throttle-retry-after", str(a.retry_after),
               "--throttle-log-size", str(a.log_size)]  # fmt: skip
        self._start_simulator("sim-fleet", cmd, SHOPS)
        url = next(iter(self.sources.values()))["url"]
        self.throttle_url = url.rpartition("/")[0] + "/__throttle__"

    def _env(self) -> dict[str, str]:
        env = super()._env()
        for option in self.args.env:
            name, _, value = option.partition("=")
            env[name] = value
        ceiling = self.args.ceiling
        env["WOOCOMMERCE_BUDGET__CEILING"] = f"{ceiling:g}" if self.arm == "budget" else "0"
        if self.arm == "budget":
            for option in self.args.budget:
                key, _, value = option.partition("=")
                env[f"WOOCOMMERCE_BUDGET__{key.upper()}"] = value
        if self.arm == "celery":
            env["BENCH_PROCESS_RATE"] = f"{ceiling / self.processes:g}"
            env["PYTHONPATH"] = os.pathsep.join((str(ROOT), str(BENCH)))
        return env

    @property
    def processes(self) -> int:
        return int(self.args.workers * self.args.concurrency)

    def _start_workers(self) -> None:
        app = "request_budget_app" if self.arm == "celery" else "worker"
        tag = uuid.uuid4().hex[:6]
        for i in range(self.args.workers):
            cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-P", "prefork",
                   "-c", str(self.args.concurrency), "-Q", FULL_QUEUE, "-n", f"full{i + 1}-{tag}@%h",
                   "--without-gossip", "--without-mingle"]  # fmt: skip
            self.procs.start(f"worker-full{i + 1}", cmd, env=self.env, cwd=ROOT)

    def wait_for_workers(self, timeout: float = 60.0) -> None:
        """Until every node answers a ping, so no arm's clock starts while its workers still boot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.procs.check_alive()
            replies = self.app.control.ping(timeout=1.0) or []
            if len(replies) >= self.args.workers:
                return
        msg = f"the worker nodes did not answer a ping within {timeout:.0f} s"
        raise TimeoutError(msg)

    def throttle_snapshot(self, *, with_log: bool) -> dict[str, Any]:
        import requests

        params = {"log": "1"} if with_log else {}
        response = requests.get(self.throttle_url, params=params, timeout=120)
        response.raise_for_status()
        return dict(response.json())


def run_arm(args: argparse.Namespace, arm: str, work: Path) -> dict[str, Any]:
    stack = BudgetStack(args, arm, work / arm)
    tasks: dict[str, Any] = {}
    try:
        stack.start()
        stack.wait_for_workers()
        names = sorted(stack.sources)
        before = stack.throttle_snapshot(with_log=False)["counts"]
        progress(f"{arm}: {len(names)} full runs enqueued")
        started = time.monotonic()
        # sync_runs stamps wall-clock times; the host's arrival log is in this machine's monotonic clock.
        wall_to_monotonic = started - time.time()
        for name in names:
            tasks[name] = stack.app.send_task(
                SYNC_TASK, kwargs={"source": name, "full": True}, queue=FULL_QUEUE
            )
        finished_after = wait_for_runs(stack, tasks, started, args.duration)
        snapshot = stack.throttle_snapshot(with_log=True)
        database = database_view(stack, names)
        first_end = database.pop("first_run_ended_wall")
        # No run ended (the cap came first): every source asked until the end.
        all_ran_until = time.monotonic() if first_end is None else first_end + wall_to_monotonic
        result = {
            "arm": arm,
            "ceiling": args.ceiling,
            "per_process_rate": args.ceiling / stack.processes if arm == "celery" else None,
            "budget_env": {k: v for k, v in stack.env.items() if k.startswith("WOOCOMMERCE_BUDGET__")},
            "seconds_to_finish": None if finished_after is None else round(finished_after, 1),
            "task_states": {name: task.state for name, task in tasks.items()},
            **host_view(snapshot, before, started, args.hidden_rate),
            "while_all_ran": while_all_ran(snapshot, started, all_ran_until),
            **database,
        }
        progress(f"{arm}: " + json.dumps({k: v for k, v in result.items() if k != "timeline"}))
        return result
    finally:
        # While the arm's Redis still runs: a result dropped later would try to unsubscribe from it.
        for task in tasks.values():
            with contextlib.suppress(Exception):
                stack.app.backend.remove_pending_result(task)
        stack.close()


def wait_for_runs(stack: BudgetStack, tasks: dict[str, Any], started: float, cap: float) -> float | None:
    """Seconds from the enqueue until every run's message ended; None when ``cap`` came first."""
    while time.monotonic() - started < cap:
        stack.procs.check_alive()
        if all(task.state in FINAL for task in tasks.values()):
            return time.monotonic() - started
        time.sleep(0.5)
    progress(f"the duration cap ({cap:.0f} s) ended the arm before every run did")
    return None


def host_view(
    snapshot: dict[str, Any], before: dict[str, int], started: float, hidden: float
) -> dict[str, Any]:
    """What the host saw from the enqueue on: the arrival log is in this machine's monotonic clock."""
    arrivals = [(at, status) for at, _tenant, _path, status in snapshot["arrivals"] if at >= started]
    counts = {k: int(v) - int(before.get(k, 0)) for k, v in snapshot["counts"].items()}
    throttled_at = [at for at, status in arrivals if status == 429]
    first_429 = min(throttled_at) if throttled_at else None
    last = max((at for at, _ in arrivals), default=started)
    ok = [at for at, status in arrivals if status is not None and 200 <= status < 300]
    span = max(last - started, 1e-9)
    view: dict[str, Any] = {
        "requests": len(arrivals),
        "throttled": len(throttled_at),
        "throttled_with_retry_after": counts["throttled_with_retry_after"],
        "throttled_without_retry_after": counts["throttled_without_retry_after"],
        "other_errors": sum(1 for _, s in arrivals if s is None or (s >= 300 and s != 429)),
        "successes": len(ok),
        "first_429_s": None if first_429 is None else round(first_429 - started, 1),
        "last_request_s": round(last - started, 1),
        "useful_rps": round(len(ok) / span, 2),
        "useful_share_of_hidden": round(len(ok) / span / hidden, 3),
        # False when the simulator's bounded log dropped its oldest arrivals (raise --log-size).
        "log_complete": len(snapshot["arrivals"]) >= int(snapshot["counts"]["requests"]),
    }
    if first_429 is not None:
        after = [(at, s) for at, s in arrivals if at >= first_429 + ADAPTATION_SECONDS]
        after_ok = sum(1 for _, s in after if s is not None and 200 <= s < 300)
        after_span = max(last - (first_429 + ADAPTATION_SECONDS), 1e-9)
        view["after_adaptation"] = {
            "requests": len(after),
            "throttled": sum(1 for _, s in after if s == 429),
            "throttled_share": round(sum(1 for _, s in after if s == 429) / len(after), 4) if after else None,
            "useful_rps": round(after_ok / after_span, 2) if after else None,
        }
    view["timeline"] = timeline(arrivals, started)
    return view


def while_all_ran(snapshot: dict[str, Any], started: float, until: float) -> dict[str, Any] | None:
    """The host's view from the enqueue until the first run ended: every source still asking."""
    if until <= started:
        return None
    statuses = [status for at, _t, _p, status in snapshot["arrivals"] if started <= at < until]
    throttled = sum(1 for status in statuses if status == 429)
    ok = sum(1 for status in statuses if status is not None and 200 <= status < 300)
    return {
        "seconds": round(until - started, 1),
        "requests": len(statuses),
        "throttled_share": round(throttled / len(statuses), 4) if statuses else None,
        "useful_rps": round(ok / (until - started), 2),
    }


def timeline(arrivals: list[tuple[float, int | None]], started: float) -> list[list[int]]:
    """Per second since the enqueue: [second, 2xx answers, 429s, other]."""
    seconds: dict[int, Counter[str]] = {}
    for at, status in arrivals:
        kind = "ok" if status is not None and 200 <= status < 300 else "429" if status == 429 else "other"
        seconds.setdefault(int(at - started), Counter())[kind] += 1
    return [[s, c["ok"], c["429"], c["other"]] for s, c in sorted(seconds.items())]


def database_view(stack: BudgetStack, names: list[str]) -> dict[str, Any]:
    rows = stack.sql(
        "SELECT source, status, fetched, duration_seconds, error, finished_at FROM sync_runs "
        "WHERE source = ANY(%s) AND mode = 'full' ORDER BY id",
        (names,),
    )
    runs: dict[str, dict[str, Any]] = {name: {"deliveries": [], "fetched": 0} for name in names}
    for source, status, fetched, duration, error, finished_at in rows:
        run = runs[source]
        run["deliveries"].append(status)
        run["fetched"] += int(fetched or 0)
        run["seconds"] = round(float(duration), 1) if duration is not None else None
        run["error"] = (error or "")[:200] or None
        run["ended_wall"] = finished_at.timestamp() if finished_at is not None else None
    ends = [run["ended_wall"] for run in runs.values() if run.get("ended_wall") is not None]
    endings = Counter((run["deliveries"] or ["never started"])[-1] for run in runs.values())
    breaker = dict(
        stack.sql("SELECT event_type, count(*) FROM event_log WHERE event_type LIKE 'breaker.%%' GROUP BY 1")
    )
    mirrored = int(stack.sql("SELECT count(*) FROM products")[0][0])
    return {
        "runs": runs,
        "endings": dict(endings),
        "breaker_opened": int(breaker.get("breaker.opened", 0)),
        "breaker_events": breaker,
        "rows_mirrored": mirrored,
        "first_run_ended_wall": min(ends) if ends else None,
    }


# -- report -----------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]], hidden: float, expected: int) -> str:
    lines = [
        "| arm | requests | 429s (with Retry-After) | 429 share after adaptation | 429 share while all 4 ran "
        "| useful req/s (share of H) "
        "| all 4 ended after | runs: succeeded / partial / interrupted / failed | breaker openings "
        "| rows mirrored |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        after = r.get("after_adaptation") or {}
        share = after.get("throttled_share")
        all_ran = r.get("while_all_ran") or {}
        all_share = all_ran.get("throttled_share")
        ended = "-" if r["seconds_to_finish"] is None else f"{r['seconds_to_finish']:.0f} s"
        endings = r["endings"]
        others = {k: v for k, v in endings.items() if k not in ENDINGS}
        runs = " / ".join(str(endings.get(k, 0)) for k in ENDINGS) + (f" (+ {others})" if others else "")
        cells = [
            r["arm"], f"{r['requests']:,}", f"{r['throttled']:,} ({r['throttled_with_retry_after']:,})",
            "-" if share is None else f"{share:.1%}",
            "-" if all_share is None else f"{all_share:.1%} (first {all_ran['seconds']:.0f} s)",
            f"{r['useful_rps']:.1f} ({r['useful_share_of_hidden']:.0%})", ended, runs,
            str(r["breaker_opened"]), f"{r['rows_mirrored']:,} of {expected:,}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"H = {hidden:g} req/s. Targets for the fleet budget: under {TARGET_429_SHARE:.0%} of requests "
        f"answered 429 from {ADAPTATION_SECONDS:g} s after the first 429 on, and at least "
        f"{TARGET_RATE_SHARE:.0%} of H used."
    )
    for r in results:
        if r["arm"] == "budget":
            share = (r.get("after_adaptation") or {}).get("throttled_share") or 0.0
            met = share < TARGET_429_SHARE and r["useful_share_of_hidden"] >= TARGET_RATE_SHARE
            lines.append(f"Fleet budget: targets {'met' if met else 'NOT met'}.")
    return "\n".join(lines)


def expected_rows(products: int) -> int:
    """Products (trashed ones too) and variations of the 4 catalogs: what a complete mirror holds."""
    from worker.sandbox.catalog_woo import WooCatalog

    return sum(sum(1 for _ in WooCatalog(seed, products).expected_rows()) for seed in range(1, SHOPS + 1))


def budget_recognised() -> bool:
    """Whether this tree's settings know ``WOOCOMMERCE_BUDGET__*`` (unknown variables are ignored)."""
    from worker.infra.settings import Settings

    return "woocommerce_budget" in Settings.model_fields


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden-rate", type=float, default=20.0, help="H: the host's hidden requests/s")
    parser.add_argument("--ceiling", type=float, help="the configured total, requests/s (default 2.5 x H)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--products", type=int, default=3500, help="products per shop")
    parser.add_argument("--duration", type=float, default=600.0, help="cap per arm, seconds from the enqueue")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=4, help="the hidden bucket's burst")
    parser.add_argument(
        "--retry-after-share", type=float, default=0.25, help="share of 429s with Retry-After"
    )
    parser.add_argument("--retry-after", type=int, default=1, help="its value, seconds")
    parser.add_argument("--workers", type=int, default=2, help="celery worker nodes")
    parser.add_argument("--concurrency", type=int, default=4, help="processes per node")
    parser.add_argument(
        "--budget", action="append", default=[], metavar="FIELD=VALUE",
        help="budget arm: also set WOOCOMMERCE_BUDGET__FIELD (floor, burst, decrease, increase)",
    )  # fmt: skip
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="every arm: also set this variable for the workers (e.g. a breaker setting)",
    )  # fmt: skip
    parser.add_argument("--log-size", type=int, default=500_000, help="arrivals the simulator keeps")
    parser.add_argument("--out", type=Path, help="write every measurement here as JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (folder printed)")
    args = parser.parse_args(argv)
    args.ceiling = args.ceiling if args.ceiling is not None else 2.5 * args.hidden_rate
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s): {', '.join(unknown)}")
    # What fleet_scale's stack reads: no disturbance, and no incremental tick inside a run.
    args.disturb, args.interval = False, 86400.0
    return args


def main() -> int:
    args = parse()
    if "budget" in args.arms and not budget_recognised():
        progress("WOOCOMMERCE_BUDGET__* is not a setting of this tree: the budget arm runs without a budget")
    work = Path(tempfile.mkdtemp(prefix="request-budget-"))
    results = []
    try:
        for arm in args.arms:
            results.append(run_arm(args, arm, work))
    except KeyboardInterrupt:
        progress("interrupted: every process was ended and the database dropped")
        return 130
    finally:
        if args.keep_logs:
            progress(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    expected = expected_rows(args.products)
    text = table(results, args.hidden_rate, expected)
    print(text)
    if args.out:
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "disturb", "interval")}
        payload = {"settings": settings, "machine": machine_facts(), "budget_recognised": budget_recognised(),
                   "rows_expected": expected, "results": results}  # fmt: skip
        args.out.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
        progress(f"JSON written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
