"""Two WooCommerce shops and two Odoo databases, declared with the CLI and YAML, synced side by side by
real workers and beat; sources changed while beat runs; one shop down while the others keep syncing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from e2e_harness import (
    FAST_ENV,
    Stack,
    clean_environment,
    events,
    expected_products,
    mirrored_products,
    product_mismatches,
    runs,
    wait_until,
)
from sqlalchemy import Engine, text

from worker.sandbox import OdooSimulator, WooCommerceSimulator

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


@pytest.fixture
def fleet() -> Iterator[dict[str, Any]]:
    with (
        WooCommerceSimulator(seed=41, size=30) as shop_a,
        WooCommerceSimulator(seed=42, size=30) as shop_b,
        OdooSimulator(seed=43, size=25, db="erp-a") as erp_a,
        OdooSimulator(seed=44, size=25, db="erp-b") as erp_b,
    ):
        yield {"shop-a": shop_a, "shop-b": shop_b, "erp-a": erp_a, "erp-b": erp_b}


@pytest.fixture
def fleet_env(
    e2e_redis_url: str, migrated_pg_url: str, clean_pg: Engine, fleet: dict[str, Any], tmp_path: Path
) -> dict[str, str]:
    """No WOOCOMMERCE_*/ODOO_* variables: every source comes from the sources table."""
    env = {
        **clean_environment(),
        **FAST_ENV,
        "DATABASE_URL": migrated_pg_url,
        "REDIS_URL": e2e_redis_url,
        "REDIS_KEY_PREFIX": "sw-e2e-fleet",
        "EVENT_SPOOL_PATH": str(tmp_path / "events.spool"),
        "SOURCES_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SYNC_INCREMENTAL_INTERVAL_SECONDS": "3",
        "BEAT_SOURCES_REFRESH_SECONDS": "2",
        "ODOO_PAGE_SIZE": "10",
    }
    for name in ("shop-a", "shop-b"):
        var = name.upper().replace("-", "_")
        env[f"{var}_KEY"], env[f"{var}_SECRET"] = fleet[name].consumer_key, fleet[name].consumer_secret
    for name in ("erp-a", "erp-b"):
        env[f"{name.upper().replace('-', '_')}_API_KEY"] = fleet[name].api_key
    return env


@pytest.fixture
def fleet_stack(fleet_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    s = Stack(fleet_env, tmp_path)
    yield s
    s.close()


def syncworker(
    env: dict[str, str], cwd: Path, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / "syncworker"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def declare(env: dict[str, str], tmp_path: Path, fleet: dict[str, Any]) -> list[str]:
    """shop-a and erp-a with `sources add`; shop-b and erp-b from a YAML file with `sources apply`."""
    shop_a, erp_a, shop_b, erp_b = fleet["shop-a"], fleet["erp-a"], fleet["shop-b"], fleet["erp-b"]
    add = ("sources", "add")
    outputs = [
        syncworker(env, tmp_path, *add, "shop-a", "--kind", "woocommerce", "--url", shop_a.base_url,
                   "--credential", "consumer_key=env:SHOP_A_KEY",
                   "--credential", "consumer_secret=env:SHOP_A_SECRET"),
        syncworker(env, tmp_path, *add, "erp-a", "--kind", "odoo", "--url", erp_a.base_url,
                   "--option", f"db={erp_a.db}", "--option", f"username={erp_a.login}",
                   "--credential", "api_key=env:ERP_A_API_KEY"),
    ]  # fmt: skip
    (tmp_path / "fleet.yaml").write_text(f"""
sources:
  - name: shop-b
    kind: woocommerce
    url: {shop_b.base_url}
    credentials: {{consumer_key: "env:SHOP_B_KEY", consumer_secret: "env:SHOP_B_SECRET"}}
  - name: erp-b
    kind: odoo
    url: {erp_b.base_url}
    options: {{db: {erp_b.db}, username: "{erp_b.login}"}}
    credentials: {{api_key: "env:ERP_B_API_KEY"}}
""")
    outputs.append(syncworker(env, tmp_path, "sources", "apply", str(tmp_path / "fleet.yaml")))
    again = syncworker(env, tmp_path, "sources", "apply", str(tmp_path / "fleet.yaml"))
    assert again.stdout.splitlines() == ["created: -", "updated: -", "unchanged: erp-b, shop-b", "removed: -"]
    outputs += [
        again,
        syncworker(env, tmp_path, "sources", "list"),
        syncworker(env, tmp_path, "sources", "export"),
    ]
    return [o.stdout + o.stderr for o in outputs]


def suppliers(db: Engine, source: str) -> dict[int, str]:
    with db.connect() as conn:
        query = text("SELECT odoo_id, name FROM suppliers WHERE source = :s AND deleted_at IS NULL")
        rows = conn.execute(query, {"s": source})
        return {int(r.odoo_id): r.name for r in rows}


def exact(db: Engine, fleet: dict[str, Any]) -> bool:
    shops = all(not product_mismatches(expected_products(fleet[s].catalog), mirrored_products(db, s))
                for s in ("shop-a", "shop-b"))  # fmt: skip
    erps = all(
        suppliers(db, s) == {p["id"]: p["name"] for p in fleet[s].catalog.suppliers()}
        for s in ("erp-a", "erp-b")
    )
    return shops and erps


def entries(env: dict[str, str]) -> set[str]:
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        names = client.zrange(f"{env['REDIS_KEY_PREFIX']}:redbeat::schedule", 0, -1)
        return {n.decode().rsplit(":", 2)[-2] for n in names if b":sync:" in n}
    finally:
        client.close()


def test_two_shops_and_two_odoo_databases_sync_side_by_side_with_workers_beat_and_the_cli(
    fleet: dict[str, Any], fleet_env: dict[str, str], fleet_stack: Stack, db: Engine, tmp_path: Path
) -> None:
    outputs = declare(fleet_env, tmp_path, fleet)
    fleet_stack.worker(concurrency=2)
    fleet_stack.beat()
    # Beat creates each source's entries and the workers mirror all four: the first incremental run of
    # a source reads everything, and the shops' product ids overlap.
    wait_until(lambda: exact(db, fleet), timeout=120, what="all four mirrors to equal their upstreams")
    assert set(mirrored_products(db, "shop-a")) & set(mirrored_products(db, "shop-b"))
    assert entries(fleet_env) == {"shop-a", "shop-b", "erp-a", "erp-b"}

    # Upstream activity in one shop reaches only that shop's rows, on the schedule alone.
    shared = sorted(set(mirrored_products(db, "shop-a")) & set(mirrored_products(db, "shop-b")))[0]
    fleet["shop-b"].catalog.change(shared, name="only in shop B")
    wait_until(lambda: mirrored_products(db, "shop-b")[shared]["name"] == "only in shop B", timeout=60,
               what="the change to reach shop-b's mirror")  # fmt: skip
    assert mirrored_products(db, "shop-a")[shared]["name"] != "only in shop B"

    # shop-a goes down: its breaker opens and beat stops sending its runs; the others keep syncing.
    fleet["shop-a"].faults.set(kind="status", status=503, rate=1.0)
    wait_until(lambda: [e for e in events(db, "breaker.opened") if "shop-a" in str(e["aggregate_id"])],
               timeout=90, what="shop-a's breaker to open")  # fmt: skip
    wait_until(lambda: any((e["payload"] or {}).get("by") == "beat" and e["aggregate_id"] == "shop-a"
                           for e in events(db, "sync.skipped_breaker_open")), timeout=60,
               what="beat to skip shop-a's tick")  # fmt: skip
    fleet["erp-b"].catalog.change(next(iter(suppliers(db, "erp-b"))), name="renamed in erp-b")
    wait_until(lambda: "renamed in erp-b" in suppliers(db, "erp-b").values(), timeout=60,
               what="erp-b to keep syncing while shop-a is down")  # fmt: skip
    breakers = json.loads(syncworker(fleet_env, tmp_path, "breakers", "list", "--json").stdout)
    states = {b["name"]: b["state"] for b in breakers}
    assert states["woocommerce:shop-a"] in ("open", "half_open")
    assert states["woocommerce:shop-b"] == states["odoo:erp-a"] == states["odoo:erp-b"] == "closed"

    # Disabling a source removes its entries from beat without a restart; `sync --wait` runs one now.
    syncworker(fleet_env, tmp_path, "sources", "disable", "erp-a")
    wait_until(lambda: "erp-a" not in entries(fleet_env), timeout=30, what="beat to drop erp-a's entries")
    done = syncworker(fleet_env, tmp_path, "sync", "shop-b", "--full", "--wait", "--timeout", "90")
    assert done.stdout.strip().endswith("shop-b succeeded")
    assert runs(db, "shop-b")[-1]["mode"] == "full"

    # Credentials appear in no CLI output, no stored task result, no message and no column in clear.
    secrets = [
        v for k, v in fleet_env.items() if k.endswith(("_KEY", "_SECRET")) and k.startswith(("SHOP", "ERP"))
    ]
    client = redis.Redis.from_url(fleet_env["REDIS_URL"])
    try:
        stored = b" ".join(
            v for k in client.keys("*") if client.type(k) == b"string" and (v := client.get(k))
        )
        queued = b" ".join(m for q in (b"sync-incremental", b"sync-full") for m in client.lrange(q, 0, -1))
    finally:
        client.close()
    with db.connect() as conn:
        columns = " ".join(str(r) for r in conn.execute(text("SELECT * FROM sources")))
        logged = " ".join(str(r) for r in conn.execute(text("SELECT payload, metadata FROM event_log")))
    for secret in secrets:
        assert not [o for o in outputs if secret in o]
        assert secret.encode() not in stored and secret.encode() not in queued
        assert secret not in columns and secret not in logged
