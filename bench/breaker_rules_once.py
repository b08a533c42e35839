"""The breaker before and after "rules written once", side by side in one process.

"Before" is the ``worker/breaker`` package of a git commit (default: the last one with the duplicated
rules), extracted to a temporary directory as the package ``breaker_before``. Both run against one
private ``redis-server`` (so ``INFO commandstats`` sees only this traffic), on alternating rounds.

Measured:
* server time per script run (``usec_per_call`` of EVALSHA): a healthy admission with nothing
  buffered, one carrying a buffered success, a failure record that trips nothing, a fail-fast
  admission (FORCED_OPEN); and, with ``--definitions-only``, what defining common.lua's helpers
  costs each run (``return 1`` with and without common.lua before it);
* client CPU (``time.process_time``) and wall time per guarded call, where the guarded call is a
  real HTTP request, decoded: a 1 KB JSON body from a small ``http.server``, and a page of 100
  products from the WooCommerce simulator (``worker.sandbox``, 240 KB), each in its own process;
  and the same with a no-op call; unguarded as the baseline;
* Redis round trips per healthy guarded call (writes counted on the client's connections);
* the same guarded calls with no Redis at all (the in-process store);
* lines of the breaker package, Python and Lua.

    python bench/breaker_rules_once.py [--before f72f2e0] [--calls 2000] [--page-calls 200] [--rounds 7]
        [--server-calls 20000] [--definitions-only]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import multiprocessing
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
import requests
from breaker_overhead import CountingConnection, private_redis  # same directory
from fetch_catalog import Simulator

from worker.breaker import BreakerPolicy, CircuitBreaker, breaker_redis, protocol
from worker.breaker.state import NO_PENDING, PendingSuccesses
from worker.breaker.store import BreakerStore
from worker.infra.errors import CircuitOpenError, RetriableUpstreamError
from worker.infra.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps([{"id": i, "name": f"product {i}", "price": "9.99"} for i in range(20)]).encode()
NEVER_TRIPS = {"failure_threshold": 10**9, "minimum_calls": 10**9}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def breaker_files(commit: str) -> dict[str, str]:
    """worker/breaker at the commit: path -> text."""
    names = _git("ls-tree", "-r", "--name-only", commit, "worker/breaker").split()
    return {name: _git("show", f"{commit}:{name}") for name in names}


@contextlib.contextmanager
def breaker_before(commit: str) -> Iterator[ModuleType]:
    """The commit's worker/breaker as the package ``breaker_before``."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in breaker_files(commit).items():
            if name.endswith(".py"):
                text = text.replace("worker.breaker", "breaker_before")
            target = Path(tmp) / "breaker_before" / Path(name).relative_to("worker/breaker")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        sys.path.insert(0, tmp)
        try:
            yield importlib.import_module("breaker_before")
        finally:
            sys.path.remove(tmp)


def line_counts(commit: str) -> dict[str, dict[str, int]]:
    """Lines of Python and Lua in worker/breaker, at the commit and in the working tree."""

    def count(texts: dict[str, str]) -> dict[str, int]:
        py = sum(t.count("\n") for n, t in texts.items() if n.endswith(".py"))
        lua = sum(t.count("\n") for n, t in texts.items() if n.endswith(".lua"))
        return {"python": py, "lua": lua, "total": py + lua}

    before = breaker_files(commit)
    now = {
        str(p.relative_to(ROOT)): p.read_text()
        for p in sorted((ROOT / "worker/breaker").rglob("*"))
        if p.suffix in (".py", ".lua")
    }
    generic = {n: t for n, t in now.items() if re.search(r"/(local_redis|keyspace)\.py$", n)}
    return {"before": count(before), "after": count(now), "after, of which LocalRedis": count(generic)}


def serve_json(port: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the clients of a sync use it
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port.value = server.server_address[1]
    server.serve_forever()


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    ctx = multiprocessing.get_context("fork")
    port = ctx.Value("i", 0)
    proc = ctx.Process(target=serve_json, args=(port,), daemon=True)
    proc.start()
    for _ in range(200):
        if port.value:
            break
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port.value}/products"
    finally:
        proc.terminate()
        proc.join(5)


def counted(client: redis.Redis) -> redis.Redis:
    client.connection_pool.connection_class = CountingConnection
    return client


def evalsha_usec(admin: redis.Redis, fn: Callable[[], Any], calls: int) -> float:
    fn()  # loads the script
    admin.config_resetstat()
    for _ in range(calls):
        fn()
    stats = admin.info("commandstats")["cmdstat_evalsha"]
    return float(stats["usec"]) / stats["calls"]


def client_cost(fn: Callable[[], Any], calls: int) -> dict[str, float]:
    sends = CountingConnection.sends
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "cpu_us": cpu / calls * 1e6,
        "wall_us": wall / calls * 1e6,
        "round_trips": (CountingConnection.sends - sends) / calls,
    }


def swallow(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(RetriableUpstreamError, CircuitOpenError):
            fn()

    return run


def fail() -> None:
    raise RetriableUpstreamError("503", status_code=503)


def server_scenarios(old: ModuleType, url: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """EVALSHA usec per call, median of the rounds, for each store operation."""
    admin = redis.Redis.from_url(url)
    old_store = importlib.import_module("breaker_before.redis_store")
    old_state = importlib.import_module("breaker_before.state")

    def stores(kind: str, **policy: Any) -> tuple[Any, Any]:
        prefix = f"bench-{uuid.uuid4().hex}:breaker:{{{kind}}}"
        client = redis.Redis.from_url(url)
        before = old_store.RedisBreakerStore(kind, client, old.BreakerPolicy(**policy), prefix + "old")
        after = BreakerStore(kind, client, BreakerPolicy(**policy), prefix + "new")
        return before, after

    healthy = stores("healthy")
    buffered = stores("buffered")
    failing = stores("failing", **NEVER_TRIPS)
    forced = stores("forced")
    for store in forced:
        store.command("force_open", "bench")
    plan: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "healthy admission, nothing buffered": (
            lambda: healthy[0].admit(old_state.NO_PENDING),
            lambda: healthy[1].admit(NO_PENDING),
        ),
        "healthy admission carrying a buffered success": (
            lambda: buffered[0].admit(old_state.PendingSuccesses(0, 1, 0, 0.0005)),
            lambda: buffered[1].admit(PendingSuccesses(0, 1, 0, 0.0005)),
        ),
        "failure record, no trip": (
            lambda: failing[0].record("fail", 0, None, "RetriableUpstreamError:503", old_state.NO_PENDING),
            lambda: failing[1].record("fail", 0, None, "RetriableUpstreamError:503", NO_PENDING),
        ),
        "fail-fast admission (FORCED_OPEN)": (
            lambda: forced[0].admit(old_state.NO_PENDING),
            lambda: forced[1].admit(NO_PENDING),
        ),
    }
    results: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in plan}
    for _ in range(rounds):
        for name, (before, after) in plan.items():
            results[name]["before"].append(evalsha_usec(admin, before, calls))
            results[name]["after"].append(evalsha_usec(admin, after, calls))
    return {
        name: {side: round(statistics.median(values), 2) for side, values in sides.items()}
        for name, sides in results.items()
    }


def definition_cost(url: str, calls: int, rounds: int) -> dict[str, float]:
    """EVALSHA usec per call of ``return 1``, alone and after common.lua's definitions."""
    admin = redis.Redis.from_url(url)
    common = (ROOT / "worker/breaker/scripts/common.lua").read_text()
    args = protocol.script_args(protocol.policy_args(BreakerPolicy()), NO_PENDING, protocol.NO_OPERATION)
    keys = protocol.keys("bench:{definitions}")
    results = {}
    for name, source in (("return 1", "return 1"), ("common.lua, then return 1", common + "\nreturn 1")):
        script = admin.register_script(source)
        runs = [evalsha_usec(admin, lambda s=script: s(keys=keys, args=args), calls) for _ in range(rounds)]
        results[name] = round(statistics.median(runs), 2)
    return results


def client_scenarios(
    old: ModuleType, url: str, http_url: str, shop: Simulator, calls: int, page_calls: int, rounds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Per guarded call: client CPU, wall time, Redis round trips (medians of the rounds)."""
    session = requests.Session()
    pages = iter(range(10**9))

    def http_call() -> Any:
        response = session.get(http_url, timeout=5)
        response.raise_for_status()
        return response.json()

    def page_call() -> Any:
        response = session.get(
            shop.env["WOOCOMMERCE_URL"] + "/wp-json/wc/v3/products",
            params={"per_page": 100, "page": next(pages) % 20 + 1},
            auth=(shop.env["WOOCOMMERCE_CONSUMER_KEY"], shop.env["WOOCOMMERCE_CONSUMER_SECRET"]),
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    settings = load_settings(redis_url=url)
    old_factory = importlib.import_module("breaker_before.factory")
    before = old.CircuitBreaker(
        "bench",
        counted(old_factory.breaker_redis(settings)),
        old.BreakerPolicy(),
        key_prefix=f"bench-{uuid.uuid4().hex}:breaker:{{old}}",
    )
    after = CircuitBreaker(
        "bench",
        counted(breaker_redis(settings)),
        BreakerPolicy(),
        key_prefix=f"bench-{uuid.uuid4().hex}:breaker:{{new}}",
    )
    local_before = old.CircuitBreaker("bench", None, old.BreakerPolicy(**NEVER_TRIPS))
    local_after = CircuitBreaker("bench", None, BreakerPolicy(**NEVER_TRIPS))
    plan: dict[str, dict[str, Callable[[], Any]]] = {
        "WooCommerce page, unguarded": {"baseline": page_call},
        "WooCommerce page, guarded (Redis)": {
            "before": lambda: before.call(page_call),
            "after": lambda: after.call(page_call),
        },
        "HTTP GET, unguarded": {"baseline": http_call},
        "HTTP GET, guarded (Redis)": {
            "before": lambda: before.call(http_call),
            "after": lambda: after.call(http_call),
        },
        "no-op, unguarded": {"baseline": lambda: None},
        "no-op, guarded (Redis)": {
            "before": lambda: before.call(lambda: None),
            "after": lambda: after.call(lambda: None),
        },
        "HTTP GET, guarded, no Redis (in-process store)": {
            "before": lambda: local_before.call(http_call),
            "after": lambda: local_after.call(http_call),
        },
        "failing no-op, guarded, no Redis (in-process store)": {
            "before": swallow(lambda: local_before.call(fail)),
            "after": swallow(lambda: local_after.call(fail)),
        },
    }
    for sides in plan.values():  # warm up: connections, scripts, the Lua runtime
        for fn in sides.values():
            fn()
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {side: [] for side in sides} for name, sides in plan.items()
    }
    for _ in range(rounds):
        for name, sides in plan.items():
            for side, fn in sides.items():
                results[name][side].append(client_cost(fn, page_calls if "page" in name else calls))
    return {
        name: {
            side: {
                measure: round(statistics.median(run[measure] for run in runs), 2)
                for measure in ("cpu_us", "wall_us", "round_trips")
            }
            for side, runs in sides.items()
        }
        for name, sides in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="f72f2e0", help="the commit to compare against")
    parser.add_argument("--calls", type=int, default=2000, help="guarded calls per round")
    parser.add_argument("--page-calls", type=int, default=200, help="guarded page fetches per round")
    parser.add_argument("--server-calls", type=int, default=20000, help="script runs per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--definitions-only", action="store_true", help="only what common.lua costs a run")
    args = parser.parse_args()
    if args.definitions_only:
        with private_redis() as url:
            print(json.dumps(definition_cost(url, args.server_calls, args.rounds), indent=2))
        return
    summary: dict[str, Any] = {"before_commit": args.before, "lines": line_counts(args.before)}
    shop = Simulator(2000)
    try:
        with breaker_before(args.before) as old, private_redis() as url, http_server() as http_url:
            summary["server_usec_per_evalsha"] = server_scenarios(old, url, args.server_calls, args.rounds)
            summary["per_guarded_call"] = client_scenarios(
                old, url, http_url, shop, args.calls, args.page_calls, args.rounds
            )
    finally:
        shop.close()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
