"""The request budget across real processes on the real Redis: what several worker processes calling
one host get, exactly as the admission script decides it.

Each process is its own interpreter (multiprocessing "spawn"), with its own breaker, client and
connection, as Celery's prefork children are; they meet only in Redis, and the HTTP server below
(one host) sees what they send.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from worker.breaker import BreakerPolicy, CircuitBreaker
from worker.breaker.state import NO_PENDING
from worker.breaker.store import BreakerStore, BudgetBinding
from worker.budget import BudgetPolicy, read_budget, set_ceiling
from worker.infra.errors import RateLimited

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/0"
HOST = "shop.test"
PROCESSES = 4
SPAWN = multiprocessing.get_context("spawn")


def binding(prefix: str, **policy: Any) -> BudgetBinding:
    return BudgetBinding.for_host(HOST, BudgetPolicy(**policy), prefix)


# -- run in the child processes ---------------------------------------------------------------------


def take_slots(prefix: str, policy: dict[str, Any], count: int, start_at: float, out: Any) -> None:
    """Ask for ``count`` slots as fast as the budget gives them; report each slot (Redis time)."""
    client = redis.Redis.from_url(REDIS_URL)
    store = BreakerStore(
        "woocommerce:p", client, BreakerPolicy(), f"{prefix}:breaker", binding(prefix, **policy)
    )
    time.sleep(max(0.0, start_at - time.time()))  # every process starts together
    slots = []
    for _ in range(count):
        admission = store.admit(NO_PENDING)
        slots.append(admission.slot_at)
        time.sleep(admission.wait)
    out.put(slots)


def call_host(
    prefix: str, policy: dict[str, Any], url: str, seconds: float, start_at: float, out: Any
) -> None:
    """Guarded calls to the host for ``seconds``; a refusal is the budget's business, so go on."""
    import requests

    from worker.upstream.http import parse_retry_after

    session = requests.Session()
    breaker = CircuitBreaker(
        "woocommerce:p", redis.Redis.from_url(REDIS_URL), BreakerPolicy(failure_threshold=1000),
        key_prefix=f"{prefix}:breaker", budget=binding(prefix, **policy),
    )  # fmt: skip

    def fetch() -> None:
        resp = session.get(url, timeout=5)
        if resp.status_code == 429:
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            raise RateLimited("429", status_code=429, retry_after=wait)

    time.sleep(max(0.0, start_at - time.time()))
    calls = refused = 0
    while time.time() < start_at + seconds:
        calls += 1
        try:
            breaker.call(fetch)
        except RateLimited:
            refused += 1
    out.put((calls, refused))


# -- the host -----------------------------------------------------------------------------------------


class Host(ThreadingHTTPServer):
    """Logs every arrival (monotonic time, which all processes of this machine share) and answers 200,
    or 429 with Retry-After to the one request ``refuse_at`` names."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.arrivals: list[float] = []
        self.refuse_at: int | None = None
        self.retry_after = 2
        self.refused_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(BaseHTTPRequestHandler):
    server: Host

    def do_GET(self) -> None:
        host = self.server
        with host.lock:
            now = time.monotonic()
            host.arrivals.append(now)
            refuse = host.refuse_at is not None and len(host.arrivals) == host.refuse_at
            if refuse:
                host.refused_at = now
        if refuse:
            self.send_response(429)
            self.send_header("Retry-After", str(host.retry_after))
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def host() -> Iterator[Host]:
    server = Host()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_processes(target: Any, args: tuple[Any, ...], n: int = PROCESSES) -> list[Any]:
    out = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args, out)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- the tests ----------------------------------------------------------------------------------------


def test_no_process_gets_a_slot_the_bucket_does_not_allow(key_prefix: str, redis_client: redis.Redis) -> None:
    policy = {"ceiling": 40.0, "burst": 3, "max_wait": 60.0}
    per_process = 30
    results = run_processes(take_slots, (key_prefix, policy, per_process, time.time() + 2.0))
    slots = sorted(s for result in results for s in result)
    assert len(slots) == PROCESSES * per_process
    # GCRA's promise, over every window: at most burst + rate * length slots (times kept to the µs).
    for i in range(len(slots)):
        for j in range(i, len(slots)):
            assert j - i + 1 <= 3 + 40.0 * (slots[j] - slots[i] + 2e-6) + 1e-9, (i, j)
    # And the processes did contend: most slots follow each other at the budget's spacing, not at the
    # processes' own pace (which is only a Redis round trip).
    gaps = sorted(b - a for a, b in itertools.pairwise(slots))
    assert gaps[len(gaps) // 2] == pytest.approx(1 / 40.0, rel=0.1)
    assert read_budget(redis_client, key_prefix, HOST, 40.0).granted == len(slots)


def test_a_retry_after_pauses_every_process(host: Host, key_prefix: str) -> None:
    host.refuse_at, host.retry_after = 60, 2  # the 60th request, once all four are busy
    policy = {"ceiling": 50.0, "burst": 2, "decrease": 0.9}
    results = run_processes(call_host, (key_prefix, policy, host.url, 5.0, time.time() + 2.0))
    assert host.refused_at is not None
    assert sum(refused for _, refused in results) == 1
    after = [t - host.refused_at for t in host.arrivals if t > host.refused_at]
    # Calls already granted a slot before the refusal was recorded may still land (a few ms, at
    # 50/s shared by four processes); then nothing, from any process, until the pause is over.
    assert [t for t in after if 0.3 < t < 2.0 - 0.05] == []
    assert len([t for t in after if t >= 2.0 - 0.02]) > 20  # and every process came back after it
    assert all(calls > 5 for calls, _ in results)


def test_a_ceiling_changed_fleet_wide_holds_from_the_next_call(
    host: Host, key_prefix: str, redis_client: redis.Redis
) -> None:
    policy = {"ceiling": 100.0, "burst": 2}
    start = time.time() + 2.0
    changed: list[float] = []

    def change() -> None:
        set_ceiling(redis_client, key_prefix, HOST, 5.0)
        changed.append(time.monotonic())

    changer = threading.Timer(start + 1.5 - time.time(), change)
    changer.start()
    run_processes(call_host, (key_prefix, policy, host.url, 4.0, start))
    changer.join()
    before = [t for t in host.arrivals if t < changed[0]]
    # Slots granted before the change (at 100/s, a few hundredths of a second ahead) are spent by then.
    after = [t for t in host.arrivals if t > changed[0] + 0.3]
    assert max_in_window(before, 1.0) > 50  # near 100/s while the ceiling was 100
    # At 5/s, in any second after the change: at most the burst + 5 (+1 for the µs the host adds).
    assert max_in_window(after, 1.0) <= 2 + 5 + 1
    assert len(after) >= 5
