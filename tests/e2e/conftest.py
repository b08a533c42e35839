"""Fixtures for end-to-end tests: a private Redis database per test, the simulators, and a stack of
real `celery` processes configured for them through the environment."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from e2e_harness import BASE_REDIS_URL, FAST_ENV, Stack, claim_redis_db, clean_environment, release_redis_db
from sqlalchemy import Engine

from worker.celeryapp.app import close_app, create_app
from worker.infra.settings import Settings, load_settings
from worker.sandbox.odoo import OdooSimulator
from worker.sandbox.woocommerce import WooCommerceSimulator


@pytest.fixture
def e2e_redis_url() -> Iterator[str]:
    url = claim_redis_db(BASE_REDIS_URL, f"e2e-{uuid.uuid4().hex[:8]}")
    yield url
    release_redis_db(url)


@pytest.fixture
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=7, size=200) as sim:
        yield sim


@pytest.fixture
def odoo() -> Iterator[OdooSimulator]:
    with OdooSimulator(seed=7, size=300, version="17.0") as sim:
        yield sim


@pytest.fixture
def e2e_env(
    e2e_redis_url: str,
    migrated_pg_url: str,
    clean_pg: Engine,
    woo: WooCommerceSimulator,
    odoo: OdooSimulator,
    tmp_path: Path,
) -> dict[str, str]:
    """What every process of the test sees: private databases, the simulators, short timings."""
    return {
        **clean_environment(),
        **FAST_ENV,
        "DATABASE_URL": migrated_pg_url,
        "REDIS_URL": e2e_redis_url,
        "REDIS_KEY_PREFIX": f"sw-e2e-{uuid.uuid4().hex[:8]}",
        "EVENT_SPOOL_PATH": str(tmp_path / "events.spool"),
        "WOOCOMMERCE_URL": woo.base_url,
        "WOOCOMMERCE_CONSUMER_KEY": woo.consumer_key,
        "WOOCOMMERCE_CONSUMER_SECRET": woo.consumer_secret,
        "ODOO_URL": odoo.base_url,
        "ODOO_DB": odoo.db,
        "ODOO_USERNAME": odoo.login,
        "ODOO_API_KEY": odoo.api_key,
        "ODOO_PAGE_SIZE": "50",
    }


@pytest.fixture
def e2e_settings(e2e_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The same configuration as the subprocesses, for enqueueing and the CLI in this process."""
    for name, value in e2e_env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


@pytest.fixture
def client_app(e2e_settings: Settings) -> Iterator[Celery]:
    app = create_app(e2e_settings)
    yield app
    close_app(app)


@pytest.fixture
def stack(e2e_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    s = Stack(e2e_env, tmp_path)
    yield s
    s.close()


@pytest.fixture
def db(clean_pg: Engine) -> Engine:
    return clean_pg
