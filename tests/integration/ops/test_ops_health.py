"""`syncworker health` against the real services, and against ones that are down."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from click.testing import CliRunner
from ops_env import BIN, clean_env, free_port

from worker.cli import main
from worker.cli.output import CliState


def invoke(settings: Any, *args: str) -> Any:
    return CliRunner().invoke(main, ["health", *args], obj=CliState(settings=settings))


def test_healthy_services_exit_zero_with_latency(
    settings_factory: Any, migrated_pg_url: str, redis_url: str, clean_pg: Any
) -> None:
    upstreams = {
        "woocommerce_url": "https://shop.shops.test", "woocommerce_consumer_key": "ck_0123456789abcdef",
        "woocommerce_consumer_secret": "cs_0123456789abcdef", "odoo_url": "https://erp.shops.test",
        "odoo_db": "erp", "odoo_username": "sync@shops.test", "odoo_api_key": "odoo-key-0123456789",
    }  # fmt: skip
    settings = settings_factory(database_url=migrated_pg_url, redis_url=redis_url, **upstreams)
    checks = ["--check", "database", "--check", "redis", "--check", "broker", "--check", "breakers"]
    result = invoke(settings, *checks, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["healthy"] is True
    by_name = {c["name"]: c for c in body["checks"]}
    assert by_name["database"]["detail"].endswith("at revision 0005")
    # One breaker per configured source (here, the two the environment configures).
    assert (
        by_name["breakers"]["detail"] == "odoo:odoo-suppliers=closed, woocommerce:woocommerce-products=closed"
    )
    assert all(c["latency_ms"] >= 0 for c in body["checks"])


def test_redis_down_exits_nonzero_with_a_clear_line(tmp_path: Any, migrated_pg_url: str) -> None:
    port = free_port()
    env = clean_env(DATABASE_URL=migrated_pg_url, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    done = subprocess.run(
        [str(BIN / "syncworker"), "health"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert f"redis: DOWN (Error 111 connecting to 127.0.0.1:{port}. Connection refused.)" in done.stderr
    assert "database: DOWN" not in done.stderr


def test_database_down_exits_nonzero_with_a_clear_line(settings_factory: Any, redis_url: str) -> None:
    port = free_port()
    settings = settings_factory(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/gone", redis_url=redis_url
    )
    result = invoke(settings, "--check", "database", "--check", "redis")
    assert result.exit_code == 1
    assert "database: DOWN (" in result.stderr
    assert str(port) in result.stderr
    assert "redis: DOWN" not in result.stderr


def test_unmigrated_database_is_unhealthy(settings_factory: Any, tmp_path: Any) -> None:
    settings = settings_factory(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    result = invoke(settings, "--check", "database")
    assert result.exit_code == 1
    assert "run `syncworker db upgrade`" in result.stderr


def test_no_live_worker_is_unhealthy(settings_factory: Any, redis_url: str) -> None:
    settings = settings_factory(redis_url=redis_url)
    result = invoke(settings, "--check", "workers")
    assert result.exit_code == 1
    assert "workers: DOWN (no worker answered a ping within 1s)" in result.stderr


def test_passwords_never_reach_the_output(settings_factory: Any) -> None:
    port = free_port()
    settings = settings_factory(redis_url=f"redis://:pw-very-secret@127.0.0.1:{port}/0")
    result = invoke(settings, "--check", "redis", "--json")
    assert result.exit_code == 1
    assert "pw-very-secret" not in result.output
