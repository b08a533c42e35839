"""`syncworker sources` against a real PostgreSQL database: the whole life of configured sources.

Every command's output is checked for the credentials, and so is the raw ``sources.credentials`` column.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import text

from worker.cli import main
from worker.cli.output import CliState
from worker.infra.db import make_engine
from worker.sandbox import WooCommerceSimulator

pytestmark = pytest.mark.integration
ODOO_KEY = "odoo-api-key-0123456789abcdef"
WRONG_SECRET = "cs_wrong-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def woo() -> Iterator[WooCommerceSimulator]:
    with WooCommerceSimulator(seed=11, size=5) as sim:
        yield sim


class Fleet:
    """Runs the CLI with given keys and environment, and checks no secret ever shows."""

    def __init__(
        self, factory: Any, url: str, workdir: Path, secrets: list[str], env: dict[str, str]
    ) -> None:
        self.factory, self.url, self.workdir, self.secrets, self.env = factory, url, workdir, secrets, env
        self.keys = ""

    def __call__(self, *args: str, keys: str | None = None, stdin: str | None = None) -> Result:
        keys = self.keys if keys is None else keys
        settings = self.factory(database_url=self.url, **({"sources_encryption_keys": keys} if keys else {}))
        result = CliRunner(env=self.env).invoke(
            main, list(args), obj=CliState(settings=settings), input=stdin
        )
        for secret in self.secrets:
            assert secret not in result.stdout and secret not in result.stderr, args
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    def raw(self, sql: str) -> list[Any]:
        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql)))
        finally:
            engine.dispose()

    def assert_sealed(self) -> None:
        tokens = [row.credentials for row in self.raw("SELECT credentials FROM sources")]
        assert tokens
        assert not any(secret in token for token in tokens for secret in self.secrets)


@pytest.fixture
def fleet(
    settings_factory: Any, scratch_pg_url: str, tmp_path: Path, woo: WooCommerceSimulator, monkeypatch: Any
) -> Fleet:
    (tmp_path / "shop-secret").write_text(woo.consumer_secret + "\n")
    env = {"SHOP_KEY": woo.consumer_key, "ODOO_KEY": ODOO_KEY, "WRONG": WRONG_SECRET}
    monkeypatch.chdir(tmp_path)  # file: references on the command line are relative to the working directory
    return Fleet(
        settings_factory,
        scratch_pg_url,
        tmp_path,
        [woo.consumer_key, woo.consumer_secret, ODOO_KEY, WRONG_SECRET],
        env,
    )


def add_shop(fleet: Fleet, woo: WooCommerceSimulator, name: str = "shop-eu", *extra: str) -> Result:
    return fleet(
        "sources",
        "add",
        name,
        "--kind",
        "woocommerce",
        "--url",
        woo.base_url,
        "--credential",
        "consumer_key=env:SHOP_KEY",
        "--credential",
        "consumer_secret=file:shop-secret",
        "--option",
        "auth=basic",
        *extra,
    )


def test_the_life_of_configured_sources(fleet: Fleet, woo: WooCommerceSimulator) -> None:
    key = fleet("sources", "keygen").stdout.strip()
    Fernet(key)  # a usable key
    fleet.keys = key

    missing = fleet("sources", "list", keys=key)
    assert missing.exit_code == 1 and "run `syncworker db upgrade`" in missing.stderr
    assert fleet("db", "upgrade").exit_code == 0

    added = add_shop(fleet, woo)
    assert added.exit_code == 0, added.output
    assert "added woocommerce source shop-eu (enabled)" in added.stdout
    fleet.assert_sealed()
    assert add_shop(fleet, woo).exit_code == 1  # the name is taken

    listed = json.loads(fleet("sources", "list", "--json").stdout)
    assert listed == [
        {
            "name": "shop-eu",
            "kind": "woocommerce",
            "url": woo.base_url,
            "enabled": True,
            "schedule": {"incremental_interval_seconds": None, "full_cron": None},
        }
    ]
    shown = json.loads(fleet("sources", "show", "shop-eu", "--json").stdout)
    assert shown["credentials"] == {"consumer_key": "(set)", "consumer_secret": "(set)"}
    assert "(set)" in fleet("sources", "show", "shop-eu").stdout

    probed = fleet("sources", "test", "shop-eu")
    assert probed.exit_code == 0, probed.output
    assert "reachable: yes" in probed.stdout and "credentials accepted: yes" in probed.stdout

    edited = fleet(
        "sources",
        "edit",
        "shop-eu",
        "--credential",
        "consumer_secret=env:WRONG",
        "--concurrency",
        "2",
        "--interval",
        "120",
        "--breaker",
        "failure_threshold=3",
        "--budget",
        "ceiling=10",
    )
    assert edited.exit_code == 0 and "updated" in edited.stdout
    shown = json.loads(fleet("sources", "show", "shop-eu", "--json").stdout)
    assert shown["overrides"] == {
        "page_size": None,
        "concurrency": 2,
        "breaker": {"failure_threshold": 3},
        "budget": {"ceiling": 10},
    }
    assert fleet.raw("SELECT budget FROM sources WHERE name = 'shop-eu'") == [({"ceiling": 10},)]
    assert shown["schedule"]["incremental_interval_seconds"] == 120
    refused = fleet("sources", "test", "shop-eu")
    assert refused.exit_code == 1
    assert "credentials accepted: no" in refused.stdout and "Error:" in refused.stderr
    fleet.assert_sealed()

    assert "disabled" in fleet("sources", "disable", "shop-eu").stdout
    assert json.loads(fleet("sources", "list", "--json").stdout)[0]["enabled"] is False


def test_apply_export_rotate_and_remove(fleet: Fleet, woo: WooCommerceSimulator) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    fleet.keys = old_key
    assert fleet("db", "upgrade").exit_code == 0
    assert add_shop(fleet, woo, "shop-us").exit_code == 0
    declared = fleet.workdir / "fleet.yaml"
    declared.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {
                        "name": "shop-eu",
                        "kind": "woocommerce",
                        "url": woo.base_url,
                        "credentials": {
                            "consumer_key": "env:SHOP_KEY",
                            "consumer_secret": "file:shop-secret",
                        },
                        "options": {"auth": "basic"},
                        "schedule": {"full_cron": "30 2 * * *"},
                    },
                    {
                        "name": "erp-main",
                        "kind": "odoo",
                        "url": "https://erp.sources.test",
                        "credentials": {"api_key": "env:ODOO_KEY"},
                        "options": {"db": "main", "username": "sync"},
                    },
                ]
            }
        )
    )

    first = json.loads(fleet("sources", "apply", str(declared), "--json").stdout)
    assert first == {
        "created": ["erp-main", "shop-eu"],
        "updated": [],
        "unchanged": [],
        "removed": [],
        "dry_run": False,
    }
    stamps = fleet.raw("SELECT name, updated_at, credentials FROM sources ORDER BY name")
    second = fleet("sources", "apply", str(declared))
    assert second.exit_code == 0
    assert "unchanged: erp-main, shop-eu" in second.stdout and "created: -" in second.stdout
    assert fleet.raw("SELECT name, updated_at, credentials FROM sources ORDER BY name") == stamps

    dry = json.loads(fleet("sources", "apply", str(declared), "--prune", "--dry-run", "--json").stdout)
    assert dry["removed"] == ["shop-us"] and dry["dry_run"] is True
    assert [r.name for r in fleet.raw("SELECT name FROM sources ORDER BY name")] == [
        "erp-main",
        "shop-eu",
        "shop-us",
    ]
    fleet.assert_sealed()

    exported = fleet("sources", "export")
    assert exported.exit_code == 0
    document = yaml.safe_load(exported.stdout)
    assert document["sources"][0]["credentials"] == {"api_key": "env:ERP_MAIN_API_KEY"}
    assert fleet("sources", "export", str(fleet.workdir / "out.yaml")).exit_code == 0
    assert yaml.safe_load((fleet.workdir / "out.yaml").read_text()) == document

    rotated = fleet("sources", "rotate-keys", keys=f"{new_key},{old_key}")
    assert rotated.exit_code == 0 and "re-encrypted the credentials of 3 sources" in rotated.stdout
    assert fleet("sources", "list", keys=new_key).exit_code == 0
    stale = fleet("sources", "list", keys=old_key)
    assert (
        stale.exit_code == 2 and "cannot be decrypted with any key in SOURCES_ENCRYPTION_KEYS" in stale.stderr
    )
    fleet.keys = new_key
    fleet.assert_sealed()

    kept = fleet("sources", "remove", "shop-us", stdin="n\n")
    assert kept.exit_code == 1
    assert fleet("sources", "remove", "shop-us", "--yes").exit_code == 0
    assert [r.name for r in fleet.raw("SELECT name FROM sources ORDER BY name")] == ["erp-main", "shop-eu"]
    assert fleet("sources", "remove", "shop-us", "--yes").exit_code == 1


def test_refusals_are_clear_and_quote_no_secret(fleet: Fleet, woo: WooCommerceSimulator) -> None:
    assert fleet("db", "upgrade").exit_code == 0
    keyless = add_shop(fleet, woo)
    assert keyless.exit_code == 2
    assert "SOURCES_ENCRYPTION_KEYS is not set" in keyless.stderr and "sources keygen" in keyless.stderr
    fleet.keys = Fernet.generate_key().decode()
    inline = fleet(
        "sources",
        "add",
        "shop-eu",
        "--kind",
        "woocommerce",
        "--url",
        woo.base_url,
        "--credential",
        f"consumer_key={WRONG_SECRET}",
        "--credential",
        "consumer_secret=env:WRONG",
    )
    assert inline.exit_code == 2 and "never inline" in inline.stderr
    unset = add_shop(fleet, woo, "shop-eu", "--credential", "consumer_key=env:NOT_SET_ANYWHERE")
    assert unset.exit_code == 2 and "environment variable NOT_SET_ANYWHERE is not set" in unset.stderr
    invalid = fleet(
        "sources",
        "add",
        "erp-main",
        "--kind",
        "odoo",
        "--url",
        "https://erp.sources.test",
        "--credential",
        "api_key=env:ODOO_KEY",
        "--option",
        "protocol=soap",
    )
    assert invalid.exit_code == 1
    assert "option 'db' is missing" in invalid.stderr and "option 'username' is missing" in invalid.stderr
    assert fleet("sources", "show", "nope").exit_code == 1
    bad_file = fleet.workdir / "bad.yaml"
    bad_file.write_text(
        f"sources:\n  - name: x\n    kind: odoo\n    credentials: {{api_key: {WRONG_SECRET}}}\n"
    )
    applied = fleet("sources", "apply", str(bad_file))
    assert applied.exit_code == 1 and "never inline" in applied.stderr
    assert fleet.raw("SELECT count(*) FROM sources")[0][0] == 0
