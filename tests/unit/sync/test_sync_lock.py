"""The per-source run lock: exclusive, non-blocking, TTL-bound, renewable; the requests that meet it
become follow-ups (the highest request number waiting, per mode), cleared by the fresh pass that
serves them; a holder whose process is gone is taken over."""

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

from worker.sync import lock as lock_module
from worker.sync.lock import (
    Acquired,
    Deferred,
    Holder,
    LockLost,
    RunLock,
    followups_name,
    lock_name,
    pid_namespace,
    process_gone,
    served_modes,
)
from worker.sync.sources import SyncSource

SRC = SyncSource.WOOCOMMERCE_PRODUCTS
FULL, INCREMENTAL = "full", "incremental"
OTHER_NS = "pid:[4026531999]"


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
    """The pending follow-ups per mode (the highest request number waiting)."""
    raw = redis.hgetall(followups_name("p", SRC))
    return {k.decode(): v.decode() for k, v in raw.items() if k.decode() != "dispatched_at"}


def dispatched_at(redis: fakeredis.FakeRedis) -> int | None:
    value = redis.hget(followups_name("p", SRC), "dispatched_at")
    return None if value is None else int(value)


def dead_pid() -> int:
    """The pid of a process that ran on this host and has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def plant_holder(
    redis: fakeredis.FakeRedis, *, host: str, pid: int, pid_ns: str | None = None, token: str = "old-token"
) -> str:
    namespace = pid_namespace() if pid_ns is None else pid_ns
    value = Holder(host, pid, "old-task", INCREMENTAL, token, namespace).dumps()
    redis.set(lock_name("p", SRC), value, px=30_000)
    return value


def test_keys_of_one_source_share_a_hash_tag() -> None:
    # Redis Cluster runs a script only on keys of one slot: the hash tag puts them there.
    assert lock_name("p", SRC) == "p:{woocommerce-products}:lock"
    assert followups_name("p", SRC) == "p:{woocommerce-products}:followups"


# -- exclusion -----------------------------------------------------------------------------------


def test_a_second_request_is_deferred_and_release_frees_the_lock(fake_redis: fakeredis.FakeRedis) -> None:
    first, second = make_lock(fake_redis, task_id="t-1"), make_lock(fake_redis, task_id="t-2")
    assert first.acquire(1) == Acquired()
    deferred = second.acquire(2)
    assert isinstance(deferred, Deferred)
    assert deferred.holder == first.holder  # who holds the source, for the deferred run's row
    assert deferred.created is True
    assert first.release() == [INCREMENTAL]  # the deferred request is handed back as a follow-up
    assert not fake_redis.exists(lock_name("p", SRC))
    assert isinstance(second.acquire(2), Acquired)


def test_the_lock_names_its_holder_without_showing_the_token(fake_redis: fakeredis.FakeRedis) -> None:
    lock = make_lock(fake_redis, FULL, task_id="t-9")
    assert isinstance(lock.acquire(1), Acquired)
    stored = json.loads(fake_redis.get(lock_name("p", SRC)))
    assert stored == {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_ns": pid_namespace(),
        "task_id": "t-9",
        "mode": FULL,
        "token": lock.holder.token,
    }
    deferred = make_lock(fake_redis).acquire(2)
    assert isinstance(deferred, Deferred) and deferred.holder is not None
    assert deferred.holder == lock.holder
    assert deferred.holder.public() == {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "task_id": "t-9",
        "mode": FULL,
    }


def test_a_holder_written_without_a_pid_namespace_still_reads(fake_redis: fakeredis.FakeRedis) -> None:
    # A lock value from before the field existed (a rolling deploy): read, never taken over by pid.
    value = json.dumps({"host": "h", "pid": 7, "task_id": None, "mode": FULL, "token": "x"})
    holder = Holder.loads(value)
    assert holder == Holder("h", 7, None, FULL, "x", "")
    assert process_gone(Holder(socket.gethostname(), dead_pid(), None, FULL, "x", "")) is False


def test_two_holders_in_one_process_never_share_a_token(fake_redis: fakeredis.FakeRedis) -> None:
    assert make_lock(fake_redis).holder.token != make_lock(fake_redis).holder.token


def test_sources_do_not_share_a_lock(fake_redis: fakeredis.FakeRedis) -> None:
    assert isinstance(make_lock(fake_redis).acquire(1), Acquired)
    assert isinstance(make_lock(fake_redis, source=SyncSource.ODOO_SUPPLIERS).acquire(1), Acquired)


def test_lock_has_a_ttl_and_extend_renews_it(fake_redis: fakeredis.FakeRedis) -> None:
    lock = make_lock(fake_redis)
    assert isinstance(lock.acquire(1), Acquired)
    key = lock_name("p", SRC)
    assert 29_000 < fake_redis.pttl(key) <= 30_000
    fake_redis.pexpire(key, 1000)  # as if most of the TTL had elapsed
    lock.extend()
    assert 29_000 < fake_redis.pttl(key) <= 30_000


def test_a_crashed_holders_lock_expires(fake_redis: fakeredis.FakeRedis) -> None:
    crashed = make_lock(fake_redis)
    assert isinstance(crashed.acquire(1), Acquired)
    fake_redis.delete(lock_name("p", SRC))  # what the TTL does for a holder that died
    successor = make_lock(fake_redis)
    assert isinstance(successor.acquire(2), Acquired)
    with pytest.raises(LockLost):
        crashed.extend()  # the old holder, if it was only stalled, learns it lost the lock
    assert crashed.lost
    assert isinstance(make_lock(fake_redis).acquire(3), Deferred)
    assert crashed.release() == []  # hands back nothing, and does not release the successor's lock
    assert json.loads(fake_redis.get(lock_name("p", SRC)))["token"] == successor.holder.token
    assert successor.release() == [INCREMENTAL]


# -- follow-ups ----------------------------------------------------------------------------------


def test_deferred_requests_coalesce_into_one_followup_per_mode(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    results = [make_lock(fake_redis).acquire(n) for n in (2, 3, 4, 5, 6)]
    assert all(isinstance(r, Deferred) for r in results)
    assert [r.created for r in results if isinstance(r, Deferred)] == [True, False, False, False, False]
    assert followups(fake_redis) == {INCREMENTAL: "6"}  # the highest request number waiting
    assert holder.release() == [INCREMENTAL]


def test_a_followup_keeps_the_highest_number_whatever_the_order(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis).acquire(9)
    make_lock(fake_redis).acquire(4)  # numbered earlier, arrived later (a redelivery)
    make_lock(fake_redis, FULL).acquire(7)
    assert followups(fake_redis) == {INCREMENTAL: "9", FULL: "7"}


def test_release_hands_back_every_pending_mode(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    assert isinstance(make_lock(fake_redis, FULL).acquire(2), Deferred)
    assert isinstance(make_lock(fake_redis).acquire(3), Deferred)
    assert holder.release() == [FULL, INCREMENTAL]
    assert followups(fake_redis) == {FULL: "2", INCREMENTAL: "3"}  # pending until a run serves them


def test_release_with_followups_pending_notes_when_it_handed_them_back(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis).acquire(2)
    (now, _) = fake_redis.time()
    assert holder.release() == [INCREMENTAL]
    stamp = dispatched_at(fake_redis)
    assert stamp is not None and abs(stamp - int(now)) <= 2  # Redis's clock: the sweeper compares it


def test_a_run_without_requests_meeting_it_hands_back_nothing(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    assert holder.release() == []
    assert not fake_redis.exists(followups_name("p", SRC))  # no dispatch noted for nothing


def test_acquiring_the_lock_clears_no_followup(fake_redis: fakeredis.FakeRedis) -> None:
    # Only a fresh pass clears follow-ups (``clear_served``): a resumed pass serves only what its
    # fresh start served, so taking the lock alone must leave every follow-up pending.
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis, FULL).acquire(2)
    make_lock(fake_redis).acquire(3)
    holder.release()
    assert isinstance(make_lock(fake_redis, FULL).acquire(4), Acquired)
    assert followups(fake_redis) == {FULL: "2", INCREMENTAL: "3"}


def test_an_incremental_pass_clears_only_incremental_followups(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis, FULL).acquire(2)
    make_lock(fake_redis).acquire(3)
    holder.release()
    followup = make_lock(fake_redis)
    assert isinstance(followup.acquire(4), Acquired)
    followup.clear_served(4, full=False)
    assert followups(fake_redis) == {FULL: "2"}  # still owed a full run
    assert followup.release() == [FULL]


def test_a_full_pass_clears_both_modes(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis, FULL).acquire(2)
    make_lock(fake_redis).acquire(3)
    holder.release()
    followup = make_lock(fake_redis, FULL)
    assert isinstance(followup.acquire(4), Acquired)
    followup.clear_served(4, full=True)
    assert not fake_redis.exists(followups_name("p", SRC))  # the dispatch stamp goes with the modes
    assert followup.release() == []


def test_a_pass_clears_only_followups_numbered_up_to_what_it_serves(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis, FULL).acquire(3)
    make_lock(fake_redis).acquire(8)  # made after the next pass started: not served by it
    holder.release()
    followup = make_lock(fake_redis, FULL)
    assert isinstance(followup.acquire(9), Acquired)
    followup.clear_served(5, full=True)
    assert followups(fake_redis) == {INCREMENTAL: "8"}
    followup.clear_served(8, full=True)
    assert followups(fake_redis) == {}
    followup.clear_served(8, full=True)  # nothing left: harmless
    assert followup.release() == []


def test_a_pass_that_serves_nothing_clears_nothing(fake_redis: fakeredis.FakeRedis) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis).acquire(2)
    holder.release()
    make_lock(fake_redis).clear_served(0, full=True)
    assert followups(fake_redis) == {INCREMENTAL: "2"}


def test_served_modes() -> None:
    assert served_modes(True) == [FULL, INCREMENTAL]
    assert served_modes(False) == [INCREMENTAL]  # an incremental run never serves a full request


def test_a_lost_lock_hands_back_nothing_but_leaves_the_followup_pending(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    holder = make_lock(fake_redis)
    assert isinstance(holder.acquire(1), Acquired)
    make_lock(fake_redis).acquire(2)
    fake_redis.delete(lock_name("p", SRC))  # expired
    assert holder.release() == []
    assert followups(fake_redis) == {INCREMENTAL: "2"}  # the sweeper or the next run serves it
    assert dispatched_at(fake_redis) is None  # nobody dispatched it: the sweeper may at once


# -- a holder whose process is gone --------------------------------------------------------------


def test_a_holder_in_this_pid_namespace_whose_process_is_gone_is_replaced_at_once(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    plant_holder(fake_redis, host=socket.gethostname(), pid=dead_pid())
    lock = make_lock(fake_redis)
    assert isinstance(lock.acquire(1), Acquired)
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
        assert isinstance(make_lock(fake_redis).acquire(1), Acquired)
    finally:
        child.wait()


def test_a_holder_on_this_host_that_is_alive_is_not_replaced(fake_redis: fakeredis.FakeRedis) -> None:
    planted = plant_holder(fake_redis, host=socket.gethostname(), pid=os.getppid())
    got = make_lock(fake_redis).acquire(1)
    assert isinstance(got, Deferred)
    assert got.holder is not None and got.holder.pid == os.getppid()
    assert fake_redis.get(lock_name("p", SRC)).decode() == planted
    assert followups(fake_redis) == {INCREMENTAL: "1"}  # a live holder gets the follow-up


def test_a_holder_on_another_host_waits_out_its_ttl(fake_redis: fakeredis.FakeRedis) -> None:
    # Its pid means nothing here: only the TTL can tell that a remote holder died.
    planted = plant_holder(fake_redis, host=f"not-{socket.gethostname()}", pid=dead_pid())
    assert isinstance(make_lock(fake_redis).acquire(1), Deferred)
    assert fake_redis.get(lock_name("p", SRC)).decode() == planted


def test_a_holder_in_another_pid_namespace_waits_out_its_ttl(fake_redis: fakeredis.FakeRedis) -> None:
    # Same hostname (host networking, a fixed ``hostname:``), another container: its pid is not ours.
    planted = plant_holder(fake_redis, host=socket.gethostname(), pid=dead_pid(), pid_ns=OTHER_NS)
    assert isinstance(make_lock(fake_redis).acquire(1), Deferred)
    assert fake_redis.get(lock_name("p", SRC)).decode() == planted


def test_a_lock_value_that_names_no_holder_is_not_replaced(fake_redis: fakeredis.FakeRedis) -> None:
    fake_redis.set(lock_name("p", SRC), "another-run", px=30_000)
    got = make_lock(fake_redis).acquire(1)
    assert got == Deferred(holder=None, created=True)
    assert fake_redis.get(lock_name("p", SRC)) == b"another-run"


def test_process_gone_needs_this_pid_namespace() -> None:
    gone = dead_pid()
    here = socket.gethostname()
    assert pid_namespace()  # this platform has /proc: the other checks below mean something
    assert process_gone(Holder(here, gone, None, FULL, "t", pid_namespace())) is True
    assert process_gone(Holder(here, gone, None, FULL, "t", OTHER_NS)) is False
    assert process_gone(Holder(here, gone, None, FULL, "t", "")) is False
    assert process_gone(Holder(f"not-{here}", gone, None, FULL, "t", pid_namespace())) is False
    assert process_gone(Holder(here, os.getppid(), None, FULL, "t", pid_namespace())) is False


def test_pid_namespace_is_what_proc_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pid_namespace() == os.readlink("/proc/self/ns/pid")
    pid_namespace.cache_clear()

    def no_proc(path: str) -> str:
        raise FileNotFoundError(path)

    monkeypatch.setattr(lock_module.os, "readlink", no_proc)
    try:
        assert pid_namespace() == ""  # no /proc: no holder is ever taken over by pid
        assert process_gone(Holder(socket.gethostname(), dead_pid(), None, FULL, "t", "")) is False
    finally:
        monkeypatch.undo()
        pid_namespace.cache_clear()
    assert pid_namespace() == os.readlink("/proc/self/ns/pid")


def test_our_own_pid_with_a_token_no_run_of_ours_holds_is_gone(fake_redis: fakeredis.FakeRedis) -> None:
    # A run of this very process that could not release its lock (Redis was away at its end): no
    # live run holds that token, so the next run here takes the source over instead of deferring.
    holder = Holder(socket.gethostname(), os.getpid(), "leaked", FULL, "not-active", pid_namespace())
    assert process_gone(holder) is True
    plant_holder(fake_redis, host=socket.gethostname(), pid=os.getpid(), token="not-active")
    lock = make_lock(fake_redis)
    assert isinstance(lock.acquire(1), Acquired)
    assert followups(fake_redis) == {}
    assert lock.release() == []


def test_our_own_pid_with_the_token_of_a_live_run_is_not_gone(fake_redis: fakeredis.FakeRedis) -> None:
    running = make_lock(fake_redis, FULL)
    assert isinstance(running.acquire(1), Acquired)
    assert process_gone(running.holder) is False
    assert isinstance(make_lock(fake_redis).acquire(2), Deferred)
    assert running.release() == [INCREMENTAL]
    assert process_gone(running.holder) is True  # released: its token no longer names a live run


def test_a_lock_taken_a_moment_ago_by_another_thread_of_this_process_is_not_taken_over(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    first, second = make_lock(fake_redis, task_id="t-1"), make_lock(fake_redis, task_id="t-2")
    script = first._acquire
    met: list[object] = []

    def a_second_run_meets_the_lock_now(keys: list[str], args: list[object]) -> object:
        answer = script(keys, args)
        met.append(second.acquire(2))  # another thread, before the first run noted its token
        return answer

    first._acquire = a_second_run_meets_the_lock_now  # type: ignore[method-assign]
    assert isinstance(first.acquire(1), Acquired)
    assert isinstance(met[0], Deferred)
    assert json.loads(fake_redis.get(lock_name("p", SRC)))["token"] == first.holder.token
