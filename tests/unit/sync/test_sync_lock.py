"""The per-source run lock: exclusive, non-blocking, TTL-bound and renewable."""

from __future__ import annotations

import fakeredis
import pytest

from worker.sync.lock import LockLost, RunLock, lock_name
from worker.sync.sources import SyncSource

SRC = SyncSource.WOOCOMMERCE_PRODUCTS


def test_second_holder_is_refused_and_release_frees_it(fake_redis: fakeredis.FakeRedis) -> None:
    first, second = (RunLock(fake_redis, "p", SRC, 30) for _ in range(2))
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()


def test_sources_do_not_share_a_lock(fake_redis: fakeredis.FakeRedis) -> None:
    assert RunLock(fake_redis, "p", SRC, 30).acquire()
    assert RunLock(fake_redis, "p", SyncSource.ODOO_SUPPLIERS, 30).acquire()


def test_lock_has_a_ttl_and_extend_renews_it(fake_redis: fakeredis.FakeRedis) -> None:
    lock = RunLock(fake_redis, "p", SRC, 30)
    assert lock.acquire()
    key = lock_name("p", SRC)
    fake_redis.pexpire(key, 1000)  # as if most of the TTL had elapsed
    lock.extend()
    assert 29_000 < fake_redis.pttl(key) <= 30_000


def test_a_crashed_holders_lock_expires(fake_redis: fakeredis.FakeRedis) -> None:
    crashed = RunLock(fake_redis, "p", SRC, 30)
    assert crashed.acquire()
    fake_redis.delete(lock_name("p", SRC))  # what the TTL does for a holder that died
    successor = RunLock(fake_redis, "p", SRC, 30)
    assert successor.acquire()
    with pytest.raises(LockLost):
        crashed.extend()  # the old holder, if it was only stalled, learns it lost the lock
    crashed.release()  # does not release the successor's lock
    assert not RunLock(fake_redis, "p", SRC, 30).acquire()
