"""What a PostgreSQL database and a Redis database hold: for tests that prove a command wrote nothing."""

from __future__ import annotations

import psycopg
import redis


def tables_in(pg_url: str) -> list[str]:
    """The tables of a PostgreSQL database, to show that nothing created any."""
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return sorted(str(row[0]) for row in rows)


def keys_in(redis_url: str) -> set[bytes]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        return set(client.scan_iter(count=1000))
    finally:
        client.close()
