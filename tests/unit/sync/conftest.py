"""Fixtures for the sync engine's unit tests: a migrated SQLite file per test, fakeredis, fakes."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from sqlalchemy import Engine
from sync_fakes import FakeClock, FakeEventLog, FakeOdoo, FakeWoo, kind_of

from worker.infra.db import make_engine, make_session_factory, upgrade_database
from worker.sync import SyncDeps, SyncSource, run_sync
from worker.sync.requests import number_request


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrations run once; each test copies the migrated file."""
    path = tmp_path_factory.mktemp("sync-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_engine(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "sync.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> FakeEventLog:
    return FakeEventLog()


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def woo(clock: FakeClock) -> FakeWoo:
    return FakeWoo(clock)


@pytest.fixture
def odoo(clock: FakeClock) -> FakeOdoo:
    return FakeOdoo(clock)


class FakeBreaker:
    def __init__(self) -> None:
        self.next_attempt_at: float | None = None

    def stats(self) -> Any:
        return self


@pytest.fixture
def make_deps(
    settings_factory: Any, sqlite_engine: Engine, fake_redis: Any, events: FakeEventLog, clock: FakeClock
) -> Callable[[Any], SyncDeps]:
    settings = settings_factory(sync_overlap_seconds=120, sync_lock_ttl_seconds=60)

    def make(client: Any) -> SyncDeps:
        return SyncDeps(settings, make_session_factory(sqlite_engine), fake_redis, events, FakeBreaker(),
                        client, kind_of(client), clock=clock)  # fmt: skip

    return make


@pytest.fixture
def sync(make_deps: Callable[[Any], SyncDeps], woo: FakeWoo, odoo: FakeOdoo) -> Callable[..., Any]:
    """``sync(source, full=..., should_stop=..., task_id=..., request=..., dispatch_followups=...)``
    against the fakes; without ``request``, the call is a new request numbered like the tasks number one."""

    def run(
        source: SyncSource,
        *,
        full: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        task_id: str | None = "task-1",
        request: int | None = None,
        dispatch_followups: Callable[[list[str]], None] | None = None,
    ) -> Any:
        client = woo if source is SyncSource.WOOCOMMERCE_PRODUCTS else odoo
        deps = make_deps(client)
        number = number_request(deps.session_factory, source) if request is None else request
        return run_sync(
            source,
            deps,
            full=full,
            task_id=task_id,
            should_stop=should_stop,
            request=number,
            dispatch_followups=dispatch_followups,
        )

    return run
