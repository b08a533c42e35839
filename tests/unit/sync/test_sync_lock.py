"""The per-source run lock: exclusive, non-blocking, TTL-bound, renewable; the requests that meet it
become follow-ups, and requests are numbered so a run knows which ones it serves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import pytest

from worker.sync.lock import (
    Acquired,
    Deferred,
    Holder,
    LockLost,
    RunLock,
    delivery_request,
    followups_name,
    lock_name,
    next_request,
    requests_name,
)
from worker.sync.sources import SyncSource

SRC = SyncSource.WOOCOMMERCE_PRODUCTS
FULL, INCREMENTAL = "full", "incremental"


def make_lock(
    redis: fakeredis.FakeRedis,
    mode: str = INCREMENTAL,
    *,
    source: SyncSource = SRC,
    task_id: str | None = None,
    ttl: float = 30,
) -> RunLock:
    return RunLock(redis, "p", source, ttl, Holder.here(task_id, mode))


def followups(redis: fakeredis.FakeRedis) -> dict[str, str]:
    raw = redis.hgetall(followups_name("p", SRC))
    return {k.decode(): v.decode() for k, v in raw.items()}


def dead_pid() -> int:
    """The pid of a process that ran on this host and has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def plant_holder(redis: fakeredis.FakeRedis, *, host: str, pid: int) -> str:
    value = Holder(host, pid, "old-task", INCREMENTAL, "old-token").dumps()
    redis.set(lock_name("p", SRC), value, px=30_000)
    return value


# -- exclusion -----------------------------------------------------------------------------------


def test_a_second_request_is_deferred_and_release_frees_the_lock(fake_redis: fakeredis.FakeRedis) -> None:
    first, second = make_lock(fake_redis, task_id="t-1"), make_lock(fake_redis, task_id="t-2")
    assert isinstance(first.acquire(), Acquired)
    deferred = second.acquire()
    assert isinstance(deferred, Deferred)
    assert deferred.holder == first.holder  # who holds the source, for the deferred run's row
    assert deferred.created is True
    assert first.release() == [INCREMENTAL]  # the deferred request is handed back as a follow-up
    assert not fake_redis.exists(lock_name("p", SRC))
    assert isinstance(second.acquire(), Acquired)


def test_the_lock_names_its_holder_without_showing_the_token(fake_redis: fakeredis.FakeRedis) -> None:
    lock = make_lock(fake_redis, FULL, task_id="t-9")
    assert isinstance(lock.acquire(), Acquired)
    stored = json.loads(fake_redis.get(lock_name("p", SRC)))
    assert stored == {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "task_id": "t-9",
        "mode": FULL,
        "token": lock.holder.token,
    }
    deferred = make_lock(fake_redis).acquire()
    assert isinstance(deferred, Deferred) and deferred.holder is not None
    assert deferred.holder.public() == {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "task_id": "t-9",
        "mode": FULL,
    }


def test_two_holders_in_one_process_never_share_a_token(fake_redis: fakeredis.FakeRedis) -> None:
    assert make_lock(fake_redis).holder.token != make_lock(fake_redis).holder.token


def test_sources_do_not_share_a_lock(fake_redis: fakeredis.FakeRedis) -> None:
    assert isinstance(make_lock(fake_redis).acquire(), Acquired)
    assert isinstance(make_lock(fake_redis, source=SyncSource.ODOO_SUPPLIERS).acquire(), Acquired)


def test_lock_has_a_ttl_and_extend_renews_it(fake_redis: fakeredis.FakeRedis) -> None:
    lock = make_lock(fake_redis)
    assert isinstance(lock.acquire(), Acquired)
    key = lock_name("p", SRC)
    assert 29_000 < fake_redis.pttl(key) <= 30_000
    fake_redis.pexpire(key, 1000)  # as if most of the TTL had elapsed
    lock.extend()
    assert 29_000 < fake_redis.pttl(key) <= 30_000


def test_a_crashed_holders_lock_expires(fake_redis: fakeredis.FakeRedis) -> None:
    crashed = make_lock(fake_redis)
    assert isinstance(crashed.acquire(), Acquired)
    fake_redis.delete(lock_name("p", SRC))  # what the TTL does for a holder that died
    successor = make_lock(fake_redis)
    assert isinstance(successor.acquire(), Acquired)
    with pytest.raises(LockLost):
        crashed.extend()  # the old holder, if it was only stalled, learns it lost the lock
    assert crashed.lost
    assert isinstance(make_lock(fake_redis).acquire(), Deferred)
    assert crashed.release() == []  # hands back nothing, and does not release the successor's lock
    assert json.loads(fake_redis.get(lock_name("p", SRC)))["token"] == successor.holder.token
    assert successor.release() == [INCREMENTAL]


# -- follow-ups ----------------------------------------------------------------------------------


def test_deferred_requests_coalesce_into_one_followup_per_mode(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(), Acquired)
    results = [make_lock(fake_redis).acquire() for _ in range(5)]
    assert all(isinstance(r, Deferred) for r in results)
    assert [r.created for r in results if isinstance(r, Deferred)] == [True, False, False, False, False]
    assert followups(fake_redis) == {INCREMENTAL: "1", f"{INCREMENTAL}:requests": "5"}
    assert holder.release() == [INCREMENTAL]


def test_release_hands_back_every_pending_mode(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(), Acquired)
    assert isinstance(make_lock(fake_redis, FULL).acquire(), Deferred)
    assert isinstance(make_lock(fake_redis).acquire(), Deferred)
    assert holder.release() == [FULL, INCREMENTAL]


def test_a_run_without_requests_meeting_it_hands_back_nothing(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(), Acquired)
    assert holder.release() == []


def test_an_incremental_run_serves_only_incremental_followups(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(), Acquired)
    make_lock(fake_redis, FULL).acquire()
    make_lock(fake_redis).acquire()
    holder.release()
    followup = make_lock(fake_redis)
    assert isinstance(followup.acquire(), Acquired)
    assert followups(fake_redis) == {FULL: "1", f"{FULL}:requests": "1"}  # still owed a full run
    assert followup.release() == [FULL]


def test_a_full_run_serves_both_modes(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(), Acquired)
    make_lock(fake_redis, FULL).acquire()
    make_lock(fake_redis).acquire()
    holder.release()
    followup = make_lock(fake_redis, FULL)
    assert isinstance(followup.acquire(), Acquired)
    assert followups(fake_redis) == {}
    assert followup.release() == []


def test_a_lost_lock_hands_back_nothing_but_leaves_the_followup_pending(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(), Acquired)
    make_lock(fake_redis).acquire()
    fake_redis.delete(lock_name("p", SRC))  # expired
    assert holder.release() == []
    assert INCREMENTAL in followups(fake_redis)  # the next run of the source serves it


# -- request numbers -----------------------------------------------------------------------------


def test_a_run_serves_every_request_numbered_before_it_started(fake_redis: fakeredis.FakeRedis) -> None:
    assert [next_request(fake_redis, "p", SRC) for _ in range(3)] == [1, 2, 3]
    assert next_request(fake_redis, "p", SyncSource.ODOO_SUPPLIERS) == 1  # each source counts its own
    lock = make_lock(fake_redis)
    assert lock.acquire() == Acquired(serves_through=3)
    assert next_request(fake_redis, "p", SRC) == 4  # made while the run goes on: not served by it


def test_a_run_before_any_request_serves_none(fake_redis: fakeredis.FakeRedis) -> None:
    assert make_lock(fake_redis).acquire() == Acquired(serves_through=0)


def test_a_delivery_keeps_its_request_number_across_redeliveries(fake_redis: fakeredis.FakeRedis) -> None:
    first = delivery_request(fake_redis, "p", SRC, "beat-1", 600)
    next_request(fake_redis, "p", SRC)  # other requests come in meanwhile
    assert delivery_request(fake_redis, "p", SRC, "beat-1", 600) == first
    other = delivery_request(fake_redis, "p", SRC, "beat-2", 600)
    assert other == first + 2  # numbered from the same counter as enqueued requests
    assert delivery_request(fake_redis, "p", SRC, "beat-2", 600) == other
    assert int(fake_redis.get(requests_name("p", SRC))) == other
    assert 0 < fake_redis.ttl("p:request:beat-1") <= 600  # forgotten once no redelivery can come


# -- a holder whose process is gone --------------------------------------------------------------


def test_a_holder_on_this_host_whose_process_is_gone_is_replaced_at_once(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    plant_holder(fake_redis, host=socket.gethostname(), pid=dead_pid())
    lock = make_lock(fake_redis)
    assert isinstance(lock.acquire(), Acquired)
    assert json.loads(fake_redis.get(lock_name("p", SRC)))["token"] == lock.holder.token
    assert followups(fake_redis) == {}  # the taking run serves the request; no follow-up is owed
    lock.extend()
    assert lock.release() == []


def test_a_holder_killed_but_not_yet_reaped_counts_as_gone(fake_redis: fakeredis.FakeRedis) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 20
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not waited for
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        plant_holder(fake_redis, host=socket.gethostname(), pid=child.pid)
        assert isinstance(make_lock(fake_redis).acquire(), Acquired)
    finally:
        child.wait()


def test_a_holder_on_this_host_that_is_alive_is_not_replaced(fake_redis: fakeredis.FakeRedis) -> None:
    planted = plant_holder(fake_redis, host=socket.gethostname(), pid=os.getppid())
    got = make_lock(fake_redis).acquire()
    assert isinstance(got, Deferred)
    assert got.holder is not None and got.holder.pid == os.getppid()
    assert fake_redis.get(lock_name("p", SRC)).decode() == planted


def test_a_holder_on_another_host_waits_out_its_ttl(fake_redis: fakeredis.FakeRedis) -> None:
    # Its pid means nothing here: only the TTL can tell that a remote holder died.
    planted = plant_holder(fake_redis, host=f"not-{socket.gethostname()}", pid=dead_pid())
    assert isinstance(make_lock(fake_redis).acquire(), Deferred)
    assert fake_redis.get(lock_name("p", SRC)).decode() == planted


def test_a_lock_value_that_names_no_holder_is_not_replaced(fake_redis: fakeredis.FakeRedis) -> None:
    fake_redis.set(lock_name("p", SRC), "another-run", px=30_000)
    got = make_lock(fake_redis).acquire()
    assert got == Deferred(holder=None, created=True)
    assert fake_redis.get(lock_name("p", SRC)) == b"another-run"
