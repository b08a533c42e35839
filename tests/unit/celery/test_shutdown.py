"""The warm-shutdown path: flag raised by the main process, polled by tasks, SIGQUIT escalation."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import fakeredis
import pytest
import redis
from celery.signals import worker_ready, worker_shutting_down

from worker.celeryapp.shutdown import (
    CachedProbe,
    ShutdownFlag,
    connect_shutdown_signals,
    flag_key,
    start_escalation,
)

NODE = "sync-1@host"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingFlag(ShutdownFlag):
    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client, "p", 60)
        self.reads = 0

    def is_raised(self, nodename: str) -> bool:
        self.reads += 1
        return super().is_raised(nodename)


class BrokenRedis(fakeredis.FakeRedis):
    def exists(self, *names: Any) -> int:
        raise redis.ConnectionError("down")


def test_flag_is_per_node_and_expires() -> None:
    client = fakeredis.FakeRedis()
    flag = ShutdownFlag(client, "sw", ttl_seconds=120)
    flag.raise_for(NODE)
    assert flag.is_raised(NODE)
    assert not flag.is_raised("sync-2@host")
    assert 0 < client.ttl(flag_key("sw", NODE)) <= 120
    flag.clear_for(NODE)
    assert not flag.is_raised(NODE)


def test_probe_caches_briefly_then_rereads() -> None:
    client = fakeredis.FakeRedis()
    flag = CountingFlag(client)
    clock = FakeClock()
    probe = CachedProbe(flag, ttl=0.5, clock=clock)
    assert probe(NODE) is False
    flag.raise_for(NODE)
    clock.now += 0.3
    assert probe(NODE) is False  # still cached
    clock.now += 0.3
    assert probe(NODE) is True
    assert flag.reads == 2
    assert probe("other@host") is False  # another node is never answered from this node's cache
    assert flag.reads == 3


def test_probe_keeps_going_when_redis_is_down() -> None:
    probe = CachedProbe(ShutdownFlag(BrokenRedis(), "p", 60), clock=FakeClock())
    assert probe(NODE) is False


def test_worker_signals_raise_and_clear_the_flag(settings_factory: Any) -> None:
    settings = settings_factory(celery_shutdown_escalate_seconds=None)
    client = fakeredis.FakeRedis()
    disconnect = connect_shutdown_signals(settings, lambda: client)
    try:
        key = flag_key(settings.redis_key_prefix, NODE)
        worker_shutting_down.send(sender=NODE, sig="SIGTERM", how="Warm", exitcode=0)
        assert client.exists(key)
        # The TTL outlives the longest task, so a crashed node's flag cannot linger forever.
        assert settings.celery_task_time_limit < client.ttl(key) <= settings.celery_task_time_limit + 60

        class Consumer:
            hostname = NODE

        worker_ready.send(sender=Consumer())
        assert not client.exists(key)
    finally:
        disconnect()
    worker_shutting_down.send(sender=NODE, sig="SIGTERM", how="Warm", exitcode=0)
    assert not client.exists(flag_key(settings.redis_key_prefix, NODE))


def test_warm_shutdown_starts_escalation_only_when_configured(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[float] = []
    monkeypatch.setattr(
        "worker.celeryapp.shutdown.start_escalation", lambda delay, **_: started.append(delay)
    )
    client = fakeredis.FakeRedis()
    disconnect = connect_shutdown_signals(
        settings_factory(celery_shutdown_escalate_seconds=25), lambda: client
    )
    try:
        worker_shutting_down.send(sender=NODE, sig="SIGQUIT", how="Cold", exitcode=1)
        assert started == []
        worker_shutting_down.send(sender=NODE, sig="SIGTERM", how="Warm", exitcode=0)
        assert started == [25]
    finally:
        disconnect()


def test_escalation_sends_sigquit_from_a_daemon_timer() -> None:
    # A real process receives the signal: SIGQUIT's default action ends it.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        timer = start_escalation(0.05, pid=proc.pid)
        assert timer.daemon
        assert proc.wait(timeout=20) == -signal.SIGQUIT
    finally:
        proc.kill()
        proc.wait()
