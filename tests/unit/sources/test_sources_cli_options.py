"""`syncworker sources add/edit` options: pairs, merged options, edits that change only what is given."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from source_samples import KEY_A, SHOP_KEY, SHOP_SECRET

from worker.cli import main, source_options
from worker.cli.output import CliState


def test_pairs_refuse_an_item_without_equals_sign() -> None:
    assert source_options.pairs(("a=1", "b = x=y"), "--option") == {"a": "1", "b": "x=y"}
    with pytest.raises(click.BadParameter, match="--breaker takes FIELD=VALUE"):
        source_options.pairs(("failure_threshold",), "--breaker")


def test_breaker_values_become_numbers() -> None:
    assert [source_options.scalar(v) for v in ("3", "0.5", "many")] == [3, 0.5, "many"]


def test_an_empty_option_value_removes_the_option() -> None:
    merged = source_options.merged_options(
        {"db": "main", "protocol": "json2"}, ("protocol=", "username=sync")
    )
    assert merged == {"db": "main", "username": "sync"}


@pytest.fixture
def cli(sources_template: Path, tmp_path: Path, settings_factory: Any) -> Any:
    shutil.copy(sources_template, tmp_path / "cli.db")
    settings = settings_factory(
        database_url=f"sqlite:///{tmp_path / 'cli.db'}", sources_encryption_keys=KEY_A
    )
    env = {"SHOP_KEY": SHOP_KEY, "SHOP_SECRET": SHOP_SECRET}

    def run(*args: str) -> Result:
        result = CliRunner(env=env).invoke(main, ["sources", *args], obj=CliState(settings=settings))
        assert SHOP_SECRET not in result.output and SHOP_KEY not in result.output
        return result

    return run


def test_edit_changes_only_the_given_fields(cli: Any) -> None:
    added = cli(
        "add",
        "shop-eu",
        "--kind",
        "woocommerce",
        "--url",
        "https://shop-eu.shops.test",
        "--credential",
        "consumer_key=env:SHOP_KEY",
        "--credential",
        "consumer_secret=env:SHOP_SECRET",
        "--option",
        "auth=query",
        "--full-cron",
        "0 4 * * *",
        "--disabled",
    )
    assert added.exit_code == 0, added.output
    assert "source shop-eu unchanged" in cli("edit", "shop-eu", "--option", "auth=query").stdout
    assert cli("edit", "shop-eu", "--option", "auth=", "--concurrency", "2", "--enabled").exit_code == 0
    shown = json.loads(cli("show", "shop-eu", "--json").stdout)
    assert shown["options"] == {} and shown["enabled"] is True
    assert shown["schedule"] == {"incremental_interval_seconds": None, "full_cron": "0 4 * * *"}
    assert shown["overrides"]["concurrency"] == 2
    assert cli("edit", "shop-eu", "--full-cron", "at dawn").exit_code == 1
    assert cli("edit", "nope", "--concurrency", "2").exit_code == 1


def test_budget_overrides_are_added_merged_and_refused_by_field(cli: Any) -> None:
    added = cli("add", "shop-eu", "--kind", "woocommerce", "--url", "https://shop-eu.shops.test",
                "--credential", "consumer_key=env:SHOP_KEY",
                "--credential", "consumer_secret=env:SHOP_SECRET",
                "--budget", "ceiling=10", "--breaker", "failure_threshold=3")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert cli("edit", "shop-eu", "--budget", "burst=2").exit_code == 0
    shown = json.loads(cli("show", "shop-eu", "--json").stdout)
    assert shown["overrides"]["budget"] == {"ceiling": 10, "burst": 2}
    assert shown["overrides"]["breaker"] == {"failure_threshold": 3}
    refused = cli("edit", "shop-eu", "--budget", "decrease=2", "--budget", "pace=1")
    assert refused.exit_code == 1
    assert "budget.decrease: Input should be less than 1" in refused.stderr
    assert "budget.pace: not a request budget setting" in refused.stderr
    without_value = cli("edit", "shop-eu", "--budget", "ceiling")
    assert without_value.exit_code == 2 and "--budget takes FIELD=VALUE" in without_value.stderr
    assert json.loads(cli("show", "shop-eu", "--json").stdout)["overrides"]["budget"]["ceiling"] == 10


def test_add_requires_a_url_and_keygen_prints_a_fresh_key(cli: Any) -> None:
    missing = cli("add", "shop-eu", "--kind", "woocommerce")
    assert missing.exit_code == 2 and "--url" in missing.stderr
    first, second = cli("keygen").stdout.strip(), cli("keygen").stdout.strip()
    assert first != second and len(first) == 44
