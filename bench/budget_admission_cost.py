"""What the request budget adds to a healthy admission: Redis server time and client CPU per call.

One breaker store with the host's budget and one without, on a private ``redis-server`` (so
``INFO commandstats`` sees only this traffic), alternating rounds. The budget's ceiling is far above
the pace of the loop, so no call waits: this is the cost of asking, not of waiting.

    .venv/bin/python bench/budget_admission_cost.py [--calls 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

import redis
from breaker_overhead import private_redis  # type: ignore[import-not-found]

from worker.breaker import BreakerPolicy
from worker.breaker.state import NO_PENDING
from worker.breaker.store import BreakerStore, BudgetBinding
from worker.budget import BudgetPolicy


def evalsha_usec(client: redis.Redis) -> tuple[int, float]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0))


def one_round(client: redis.Redis, store: BreakerStore, calls: int) -> dict[str, float]:
    client.config_resetstat()
    cpu = time.process_time()
    for _ in range(calls):
        store.admit(NO_PENDING)
    cpu = time.process_time() - cpu
    n, usec = evalsha_usec(client)
    return {"round_trips_per_call": n / calls, "server_usec": usec / n, "client_cpu_usec": cpu / calls * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with private_redis() as url:
        client = redis.Redis.from_url(url)
        prefix = f"bench-{uuid.uuid4().hex[:6]}"
        budget = BudgetBinding.for_host("shop.example", BudgetPolicy(ceiling=1e9, burst=1_000_000), prefix)
        stores = {
            "breaker only": BreakerStore("woocommerce:a", client, BreakerPolicy(), f"{prefix}:a"),
            "breaker + budget": BreakerStore("woocommerce:b", client, BreakerPolicy(), f"{prefix}:b", budget),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
        for _ in range(args.rounds):
            for name, store in stores.items():
                results[name].append(one_round(client, store, args.calls))
        medians = {
            name: {key: round(statistics.median(r[key] for r in rounds), 2) for key in rounds[0]}
            for name, rounds in results.items()
        }
        print(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
