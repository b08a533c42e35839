"""Fixtures for configured sources: a migrated SQLite file per test and a cipher over a fixed key."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from source_samples import KEY_A
from sqlalchemy.orm import Session

from worker.infra.db import make_engine, make_session_factory, upgrade_database
from worker.sources.secrets import CredentialCipher


@pytest.fixture(scope="session")
def sources_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrations run once; each test copies the migrated file."""
    path = tmp_path_factory.mktemp("sources-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def session(sources_template: Path, tmp_path: Path) -> Iterator[Session]:
    path = tmp_path / "sources.db"
    shutil.copy(sources_template, path)
    engine = make_engine(f"sqlite:///{path}")
    with make_session_factory(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture
def cipher() -> CredentialCipher:
    return CredentialCipher([KEY_A])
