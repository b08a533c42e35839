"""`syncworker run` with real servers configured but no upstream: it refuses, names what is missing, and
writes nothing to those servers (no table, no Redis key), as when a deploy's upstream secrets did not mount.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ops_env import BIN, clean_env
from store_contents import keys_in, tables_in

UPSTREAM_VARIABLES = [
    "ODOO_URL",
    "ODOO_DB",
    "ODOO_USERNAME",
    "ODOO_API_KEY",
    "WOOCOMMERCE_URL",
    "WOOCOMMERCE_CONSUMER_KEY",
    "WOOCOMMERCE_CONSUMER_SECRET",
]
CLAIM_KEY = b"syncworker-test:claim"  # the only key of a database claimed by own_redis_url


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("environment", ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")),
        (".env", ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")),
        ("environment", ("DATABASE_URL",)),
        (".env", ("REDIS_URL",)),
    ],
    ids=["env-all", "dotenv-all", "env-database", "dotenv-redis"],
)
def test_refuses_and_writes_nothing(
    source: str, names: tuple[str, ...], scratch_pg_url: str, own_redis_url: str, tmp_path: Path
) -> None:
    servers = {"DATABASE_URL": scratch_pg_url, "REDIS_URL": own_redis_url, "CELERY_BROKER_URL": own_redis_url}
    chosen = {name: servers[name] for name in names}
    if source == ".env":
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in chosen.items()))
        env = clean_env(EVENT_SPOOL_PATH=str(tmp_path / "spool" / "events.spool"))
    else:
        env = clean_env(**chosen, EVENT_SPOOL_PATH=str(tmp_path / "spool" / "events.spool"))
    done = subprocess.run(
        [str(BIN / "syncworker"), "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} set" in done.stderr
    for name in UPSTREAM_VARIABLES:
        assert name in done.stderr
    assert "syncworker demo" in done.stderr
    assert tables_in(scratch_pg_url) == []
    assert keys_in(own_redis_url) == {CLAIM_KEY}
    assert sorted(p.name for p in tmp_path.iterdir()) == ([".env"] if source == ".env" else [])
