"""How many calls reach a dead upstream: 8 worker processes x 200 calls each.

Compared: no breaker, a breaker per process (ours in-process, pybreaker in memory), and a breaker
shared through Redis (ours, pybreaker with CircuitRedisStorage). The upstream takes 2 ms and
fails; workers pace their attempts 5 ms apart, so the run spans several open periods.

    python bench/breaker_dead_upstream.py [--workers 8] [--calls 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import statistics
import time
import uuid
from typing import Any

import pybreaker
import redis
from breaker_overhead import private_redis  # same directory

from worker.breaker import BreakerPolicy, CircuitBreaker
from worker.infra.errors import CircuitOpenError, RetriableUpstreamError

POLICY = BreakerPolicy(
    failure_threshold=5,
    open_seconds=0.25,
    open_backoff_multiplier=2,
    open_max_seconds=2,
    half_open_max_calls=1,
    success_threshold=2,
)
UPSTREAM_SECONDS = 0.002
PACE_SECONDS = 0.005
MODES = (
    "no breaker",
    "per-process: ours in-process",
    "per-process: pybreaker memory",
    "shared: pybreaker-redis",
    "shared: fleet breaker",
)


def guard_for(mode: str, url: str, namespace: str) -> Any:
    if mode == "per-process: ours in-process":
        return CircuitBreaker("dead", None, POLICY).call
    if mode == "shared: fleet breaker":
        client = redis.Redis.from_url(url, socket_timeout=0.25, retry=None)
        return CircuitBreaker("dead", client, POLICY, key_prefix=f"{namespace}:{{dead}}").call
    if mode.startswith("per-process: pybreaker"):
        return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=0.25).call
    if mode == "shared: pybreaker-redis":
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, redis.Redis.from_url(url), namespace=namespace
        )
        return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=0.25, state_storage=storage).call
    return lambda fn: fn()


def worker(mode: str, url: str, namespace: str, calls: int, reached: Any) -> None:
    guard = guard_for(mode, url, namespace)

    def upstream() -> None:
        with reached.get_lock():
            reached.value += 1
        time.sleep(UPSTREAM_SECONDS)
        raise RetriableUpstreamError("connect timeout")

    for _ in range(calls):
        with contextlib.suppress(RetriableUpstreamError, CircuitOpenError, pybreaker.CircuitBreakerError):
            guard(upstream)
        time.sleep(PACE_SECONDS)


def run_mode(mode: str, url: str, workers: int, calls: int) -> tuple[int, float]:
    ctx = multiprocessing.get_context("fork")
    reached = ctx.Value("i", 0)
    namespace = f"bench-{uuid.uuid4().hex}"
    procs = [ctx.Process(target=worker, args=(mode, url, namespace, calls, reached)) for _ in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return reached.value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[int, float]]] = {mode: [] for mode in MODES}
    with private_redis() as url:
        for _ in range(args.repeat):
            for mode in MODES:
                results[mode].append(run_mode(mode, url, args.workers, args.calls))
    summary = {
        mode: {
            "reached_median": statistics.median(r for r, _ in runs),
            "reached_all": [r for r, _ in runs],
            "seconds_median": round(statistics.median(s for _, s in runs), 2),
        }
        for mode, runs in results.items()
    }
    print(json.dumps({"workers": args.workers, "calls_each": args.calls, **summary}, indent=2))


if __name__ == "__main__":
    main()
