"""Per-call cost of the fleet breaker against pybreaker with CircuitRedisStorage, same Redis.

Both breakers run side by side in this process, on alternating rounds, against one Redis (by
default a private ``redis-server`` started here, so ``INFO commandstats`` sees only our traffic).
Reported per guarded call: wall time minus an unguarded call, round trips (counted on the client
socket) and Redis commands (from ``INFO commandstats``; for our breaker the commands run inside
the script are listed too, but cost no round trip).

    python bench/breaker_overhead.py [--calls 5000] [--rounds 7] [--redis-url redis://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pybreaker
import redis

from worker.breaker import BreakerPolicy, CircuitBreaker
from worker.infra.errors import CircuitOpenError, RetriableUpstreamError


class CountingConnection(redis.Connection):
    """Counts writes to the socket: one per round trip (a pipeline is one write)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found; pass --redis-url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            for _ in range(100):
                with contextlib.suppress(redis.ConnectionError):
                    redis.Redis.from_url(url).ping()
                    break
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def counting_client(url: str) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(
        url, connection_class=CountingConnection, socket_timeout=0.25, socket_connect_timeout=0.25
    )
    return redis.Redis(connection_pool=pool, retry=None)


def command_stats(admin: redis.Redis) -> dict[str, tuple[int, int]]:
    """Per command: (calls, usec) so far."""
    info = admin.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in info.items() if k != "cmdstat_info"
    }


def measure(admin: redis.Redis, fn: Callable[[], None], calls: int) -> dict[str, Any]:
    """Wall time, client CPU time and server time per call, round trips and commands per call.

    On a loaded machine wall time is mostly scheduling; CPU time on each side is steadier.
    """
    before, sends = command_stats(admin), CountingConnection.sends
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = command_stats(admin)
    delta = {k: (c - before.get(k, (0, 0))[0], u - before.get(k, (0, 0))[1]) for k, (c, u) in after.items()}
    # Commands run inside a script are part of the script's time: count EVALSHA's usec only.
    server = delta["evalsha"][1] if delta.get("evalsha", (0, 0))[0] else sum(u for _, u in delta.values())
    return {
        "us": elapsed / calls * 1e6,
        "client_cpu_us": cpu / calls * 1e6,
        "server_us": server / calls,
        "round_trips": (CountingConnection.sends - sends) / calls,
        "commands": {k: round(c / calls, 2) for k, (c, _) in delta.items() if c},
    }


def fail() -> None:
    raise RetriableUpstreamError("503", status_code=503)


def swallow(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(RetriableUpstreamError, CircuitOpenError, pybreaker.CircuitBreakerError):
            fn()

    return run


def ours(client: redis.Redis, **policy: Any) -> CircuitBreaker:
    return CircuitBreaker(
        "bench", client, BreakerPolicy(**policy), key_prefix=f"bench-{uuid.uuid4().hex}:breaker:{{bench}}"
    )


def theirs(client: redis.Redis, fail_max: int) -> pybreaker.CircuitBreaker:
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, client, namespace=f"bench-{uuid.uuid4().hex}"
    )
    return pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=3600, state_storage=storage)


def scenarios(client: redis.Redis) -> dict[str, dict[str, Callable[[], None]]]:
    """For each breaker: a healthy call, a failing call that does not trip, a fail-fast call."""
    healthy_o, failing_o, open_o = (
        ours(client),
        ours(client, failure_threshold=10**9, minimum_calls=10**9),
        ours(client),
    )
    open_o.force_open("bench")
    healthy_t, failing_t, open_t = theirs(client, 5), theirs(client, 10**9), theirs(client, 5)
    open_t.open()
    return {
        "fleet breaker": {
            "healthy": lambda: healthy_o.call(lambda: None),
            "failure": swallow(lambda: failing_o.call(fail)),
            "fail_fast": swallow(lambda: open_o.call(lambda: None)),
        },
        "pybreaker-redis": {
            "healthy": lambda: healthy_t.call(lambda: None),
            "failure": swallow(lambda: failing_t.call(fail)),
            "fail_fast": swallow(lambda: open_t.call(lambda: None)),
        },
    }


def trip_cost(admin: redis.Redis, client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Round trips and commands of the one failing call that trips a breaker (threshold 1)."""
    o, t = ours(client, failure_threshold=1), theirs(client, 1)
    return {
        "fleet breaker": measure(admin, swallow(lambda: o.call(fail)), 1),
        "pybreaker-redis": measure(admin, swallow(lambda: t.call(fail)), 1),
    }


def run(url: str, calls: int, rounds: int) -> dict[str, Any]:
    admin, client = redis.Redis.from_url(url), counting_client(url)
    plan = scenarios(client)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {kind: [] for kind in kinds} for name, kinds in plan.items()
    }
    baseline: list[float] = []
    for _ in range(rounds):
        baseline.append(measure(admin, lambda: None, calls)["us"])
        for name, kinds in plan.items():  # alternate, so drift hits both alike
            for kind, fn in kinds.items():
                results[name][kind].append(measure(admin, fn, calls))
    base = statistics.median(baseline)
    summary: dict[str, Any] = {"baseline_us": round(base, 3), "calls": calls, "rounds": rounds}
    for name, kinds in results.items():
        summary[name] = {
            kind: {
                "overhead_us_median": round(statistics.median(r["us"] for r in runs) - base, 1),
                "overhead_us_min": round(min(r["us"] for r in runs) - base, 1),
                "client_cpu_us": round(statistics.median(r["client_cpu_us"] for r in runs), 1),
                "server_us": round(statistics.median(r["server_us"] for r in runs), 1),
                "round_trips": runs[-1]["round_trips"],
                "commands": runs[-1]["commands"],
            }
            for kind, runs in kinds.items()
        }
    summary["trip"] = trip_cost(admin, client)
    ours, theirs = summary["fleet breaker"], summary["pybreaker-redis"]
    for kind in ("healthy", "failure", "fail_fast"):
        summary[f"ratio_{kind}"] = {
            measure: round(ours[kind][measure] / theirs[kind][measure], 2)
            for measure in ("overhead_us_median", "overhead_us_min", "client_cpu_us", "server_us")
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    args = parser.parse_args()
    if args.redis_url:
        print(json.dumps(run(args.redis_url, args.calls, args.rounds), indent=2))
        return
    with private_redis() as url:
        print(json.dumps(run(url, args.calls, args.rounds), indent=2))


if __name__ == "__main__":
    main()
