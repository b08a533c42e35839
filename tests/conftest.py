"""Shared fixtures: a private PostgreSQL database and a private Redis database per test run.

Integration tests run against the real services at DATABASE_URL / REDIS_URL (default 127.0.0.1).
A service that does not answer fails the run with the command that starts it: never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from worker.infra.db import make_engine, normalize_url, upgrade_database
from worker.infra.settings import Settings, load_settings

ADMIN_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'


def _pg_admin_conninfo() -> str:
    url = ADMIN_DATABASE_URL
    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url.removeprefix("postgresql+psycopg://")
    if not url.startswith(("postgresql://", "postgres://")):
        # Tests need PostgreSQL even when the app is configured for SQLite.
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
    return url


def _with_database(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test run, dropped at the end."""
    admin = _pg_admin_conninfo()
    dbname = f"syncworker_test_{RUN_ID}"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(
            f"PostgreSQL is unreachable at {admin.split('@')[-1]} ({exc}).\n"
            f"Start it with: {START_POSTGRES}\nor point DATABASE_URL at a running server.",
            returncode=3,
        )
    with conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield _with_database(admin, dbname)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def scratch_pg_url() -> Iterator[str]:
    """An empty PostgreSQL database for one test alone, to check that nothing was written to it."""
    admin = _pg_admin_conninfo()
    dbname = f"syncworker_scratch_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield _with_database(admin, dbname)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_pg_url(pg_url: str) -> str:
    """The run's PostgreSQL database with every migration applied (once per run)."""
    upgrade_database(pg_url)
    return pg_url


@pytest.fixture
def pg_engine(migrated_pg_url: str) -> Iterator[Any]:
    engine = make_engine(migrated_pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_pg(pg_engine: Any) -> Any:
    """The migrated database with every table emptied before the test."""
    from sqlalchemy import text

    from models import Base

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)  # every one, sources included
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    return pg_engine


def _claim_free_redis_db() -> tuple[str, int]:
    base, _, _ = BASE_REDIS_URL.rpartition("/")
    probe = redis.Redis.from_url(BASE_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        probe.ping()
    except redis.RedisError as exc:
        pytest.exit(
            f"Redis is unreachable at {BASE_REDIS_URL} ({exc}).\nStart it with: {START_REDIS}",
            returncode=3,
        )
    finally:
        probe.close()
    # Databases 1-15 are handed out to test runs; a claim key stops two concurrent runs sharing one.
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base}/{db}")
        try:
            if client.set("syncworker-test:claim", RUN_ID, nx=True, ex=3 * 3600):
                if client.dbsize() == 1:
                    return f"{base}/{db}", db
                client.delete("syncworker-test:claim")
        finally:
            client.close()
    pytest.exit("no free Redis database (1-15) for this test run", returncode=3)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database of this run's own, emptied at the end."""
    url, _ = _claim_free_redis_db()
    yield url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture
def own_redis_url() -> Iterator[str]:
    """A Redis database for one test alone; its only key is the claim, so a write to it shows."""
    url, _ = _claim_free_redis_db()
    yield url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> str:
    return f"sw-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings_factory(tmp_path: Any, key_prefix: str) -> Any:
    """Settings that never read a developer's .env and spool into the test's own directory."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "_env_file": None,
            "database_url": f"sqlite:///{tmp_path / 'syncworker.db'}",
            "redis_url": "redis://127.0.0.1:6379/0",
            "redis_key_prefix": key_prefix,
            "event_spool_path": str(tmp_path / "events.spool"),
            "log_format": "json",
        }
        values.update(overrides)
        if "database_url" in overrides:
            values["database_url"] = normalize_url(values["database_url"])
        return load_settings(**values)

    return make
