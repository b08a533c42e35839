"""Scratch databases for tests that migrate, downgrade or seed a schema of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest


@pytest.fixture
def scratch_pg_url(pg_url: str) -> Iterator[str]:
    """A database of this test's own: the shared migrated one must not be downgraded under others."""
    base, _, _ = pg_url.rpartition("/")
    admin = f"{base}/postgres"
    name = f"syncworker_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'migrations.db'}"
