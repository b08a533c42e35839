"""The run lock on the real Redis: a request meeting a run is deferred to a follow-up, a dead holder's
lock expires."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from worker.sandbox import WooCommerceSimulator
from worker.sync import RunStatus, SyncSource, run_sync
from worker.sync.lock import Holder, RunLock, followups_name, lock_name

pytestmark = pytest.mark.integration
WOO = SyncSource.WOOCOMMERCE_PRODUCTS


def never() -> bool:
    return False


@pytest.fixture
def sim() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=5, size=40) as woo:
        yield woo


def statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT status FROM sync_runs ORDER BY id")).scalars())


def elsewhere(mode: str = "full") -> Holder:
    """A run on another host: alive as far as this one can tell, so only its TTL ends its lock."""
    return Holder("another-host", 4242, "t-1", mode, "token-1", "pid:[1]")


def test_a_request_meeting_a_run_is_deferred_and_handed_to_the_holders_release(
    sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine, redis_client: redis.Redis
) -> None:
    deps = woo_deps(sim)
    holder = RunLock(redis_client, deps.settings.redis_key_prefix, WOO, 60, elsewhere())
    assert holder.acquire(0)
    served = sim.faults.requests()
    result = run_sync(WOO, deps, full=True, task_id="t-2", should_stop=never, request=7)
    assert result.status is RunStatus.DEFERRED
    assert sim.faults.requests() == served  # nothing fetched
    assert statuses(clean_pg) == ["deferred"]
    with clean_pg.connect() as conn:
        query = "SELECT count(*) FROM event_log WHERE event_type = 'sync.deferred'"
        assert conn.execute(text(query)).scalar_one() == 1
    pending = redis_client.hgetall(followups_name(deps.settings.redis_key_prefix, WOO))
    assert pending == {b"full": b"7"}
    assert holder.release() == ["full"]  # the holder's worker enqueues the follow-up
    assert run_sync(WOO, deps, full=True, task_id="t-3", should_stop=never).status is RunStatus.SUCCEEDED


def test_lock_is_renewed_and_released(
    sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine, redis_client: redis.Redis
) -> None:
    deps = woo_deps(sim)
    name = lock_name(deps.settings.redis_key_prefix, WOO)
    ttls: list[int] = []

    def watch() -> bool:
        ttls.append(int(redis_client.pttl(name)))
        return False

    assert run_sync(WOO, deps, full=True, task_id=None, should_stop=watch).status is RunStatus.SUCCEEDED
    ttl_ms = deps.settings.sync_lock_ttl_seconds * 1000
    assert ttls and all(0 < t <= ttl_ms for t in ttls)  # held, with a TTL, during the whole run
    assert redis_client.exists(name) == 0  # released at the end


def test_crashed_holder_expires_and_its_run_is_closed(
    sim: WooCommerceSimulator, woo_deps: Any, clean_pg: Engine, redis_client: redis.Redis
) -> None:
    deps = woo_deps(sim)
    with clean_pg.begin() as conn:
        conn.execute(text(
            "INSERT INTO sync_runs (source, mode, status, started_at, fetched, inserted, updated, unchanged, "
            "skipped, failed, marked_deleted) VALUES (:s, 'full', 'running', now(), 0, 0, 0, 0, 0, 0, 0)"
        ), {"s": WOO.value})  # fmt: skip
    crashed = RunLock(redis_client, deps.settings.redis_key_prefix, WOO, 60, elsewhere())
    assert crashed.acquire(0)
    assert run_sync(WOO, deps, full=False, task_id=None, should_stop=never).status is RunStatus.DEFERRED
    redis_client.pexpire(lock_name(deps.settings.redis_key_prefix, WOO), 1)  # the TTL runs out
    while redis_client.exists(lock_name(deps.settings.redis_key_prefix, WOO)):
        pass
    assert run_sync(WOO, deps, full=False, task_id=None, should_stop=never).status is RunStatus.SUCCEEDED
    assert statuses(clean_pg) == ["interrupted", "deferred", "succeeded"]
