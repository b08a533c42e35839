"""Alembic migrations: upgrade and downgrade on PostgreSQL and SQLite, and models that match them exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

import models
from worker.infra.db import downgrade_database, make_engine, upgrade_database

pytestmark = pytest.mark.integration

TABLES = {"event_log", "products", "sources", "suppliers", "sync_reconcile_ids", "sync_runs", "sync_state"}


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, models.Base.metadata))


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upgrade_then_downgrade_then_upgrade_again(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("scratch_pg_url" if backend == "postgresql" else "sqlite_url")
    engine = make_engine(url)
    try:
        upgrade_database(url)
        assert tables(engine) == TABLES
        downgrade_database(url)
        assert tables(engine) == set()
        upgrade_database(url)  # a downgrade that left anything behind would make this fail
        assert tables(engine) == TABLES
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_models_and_migrations_agree(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("scratch_pg_url" if backend == "postgresql" else "sqlite_url")
    upgrade_database(url)
    engine = make_engine(url)
    try:
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_the_comparison_notices_a_drifted_schema(scratch_pg_url: str) -> None:
    # Proof the check above can fail: drop an index the models declare.
    upgrade_database(scratch_pg_url)
    engine = make_engine(scratch_pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_event_log_correlation_id")
        found = differences(engine)
        assert [d[0] for d in found if isinstance(d, tuple)] == ["add_index"]  # type: ignore[index]
    finally:
        engine.dispose()


def test_the_alembic_command_line_reads_database_url(tmp_path: Path) -> None:
    # What an operator runs from the project root: `alembic upgrade head`, `alembic downgrade base`.
    root = Path(__file__).resolve().parents[3]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "DATABASE_URL": url}
    for args in (["upgrade", "head"], ["downgrade", "base"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        engine = make_engine(url)
        try:
            assert tables(engine) == (TABLES if args[0] == "upgrade" else set())
        finally:
            engine.dispose()
