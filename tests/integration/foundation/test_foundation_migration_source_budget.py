"""0005 gives every source a request budget override: existing and old-style rows get ``{}``, and back."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from worker.infra.db import downgrade_database, make_engine, upgrade_database

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def insert_source(engine: Engine, name: str) -> None:
    """A row as the previous release writes it: it does not know the budget column."""
    with engine.begin() as conn:
        conn.execute(
            text("""INSERT INTO sources (name, kind, url, options, credentials, enabled, breaker,
                    created_at, updated_at) VALUES (:name, 'woocommerce', 'https://shop.test', '{}',
                    'sealed', true, '{"failure_threshold": 3}', :t, :t)"""),
            {"name": name, "t": T0},
        )


def budgets(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, budget FROM sources ORDER BY name")).all()
    return {name: value if isinstance(value, dict) else json.loads(value) for name, value in rows}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_sources_get_an_empty_budget_override_and_lose_only_it_on_downgrade(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("scratch_pg_url" if backend == "postgresql" else "sqlite_url")
    engine = make_engine(url)
    try:
        upgrade_database(url, "0004")
        insert_source(engine, "shop-before")
        upgrade_database(url, "0005")
        insert_source(engine, "shop-during")  # the previous release's CLI, mid-upgrade
        assert budgets(engine) == {"shop-before": {}, "shop-during": {}}
        with engine.begin() as conn:
            conn.execute(text("""UPDATE sources SET budget = '{"ceiling": 10}' WHERE name = 'shop-before'"""))
        assert budgets(engine)["shop-before"] == {"ceiling": 10}

        downgrade_database(url, "0004")
        assert "budget" not in {c["name"] for c in inspect(engine).get_columns("sources")}
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT name, breaker FROM sources ORDER BY name")).all()
        assert [name for name, _ in kept] == ["shop-before", "shop-during"]
    finally:
        engine.dispose()
