"""The YAML declarations: env:/file: references, refusals that name source and field, and export."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from source_samples import SHOP_KEY, SHOP_SECRET, shop

from worker.sources.declarations import DeclarationError, dump_declarations, load_declarations

DECLARED = """
sources:
  - name: shop-eu
    kind: woocommerce
    url: https://shop-eu.shops.test
    credentials:
      consumer_key: env:SHOP_EU_KEY
      consumer_secret: file:secrets/shop-eu-secret
    options: {auth: basic}
    schedule: {incremental_interval_seconds: 300, full_cron: "0 3 * * *"}
    enabled: true
    overrides: {concurrency: 4, breaker: {failure_threshold: 3}, budget: {ceiling: 10}}
  - name: erp-main
    kind: odoo
    url: https://erp.shops.test
    credentials: {api_key: env:ERP_KEY}
    options: {db: main, username: sync}
    enabled: false
"""
ENV = {"SHOP_EU_KEY": SHOP_KEY, "ERP_KEY": "odoo-key-0123456789"}


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "shop-eu-secret").write_text(SHOP_SECRET + "\n")
    return tmp_path


def problems(text: str, base_dir: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(DeclarationError) as info:
        load_declarations(text, ENV if environ is None else environ, base_dir=base_dir)
    return str(info.value)


def test_references_resolve_from_the_environment_and_files(base_dir: Path) -> None:
    eu, erp = load_declarations(DECLARED, ENV, base_dir=base_dir)
    assert eu.secret("consumer_key") == SHOP_KEY
    assert eu.secret("consumer_secret") == SHOP_SECRET  # one trailing newline dropped
    assert (eu.incremental_interval_seconds, eu.full_cron) == (300, "0 3 * * *")
    assert (eu.page_size, eu.concurrency, eu.breaker) == (None, 4, {"failure_threshold": 3})
    assert (eu.budget, erp.budget) == ({"ceiling": 10}, {})
    assert eu.options == {"auth": "basic"} and eu.enabled
    assert erp.secret("api_key") == "odoo-key-0123456789" and not erp.enabled


def test_an_absolute_file_reference_is_read_as_is(base_dir: Path, tmp_path: Path) -> None:
    text = DECLARED.replace("file:secrets/shop-eu-secret", f"file:{base_dir / 'secrets' / 'shop-eu-secret'}")
    eu, _ = load_declarations(text, ENV, base_dir=tmp_path / "elsewhere")
    assert eu.secret("consumer_secret") == SHOP_SECRET


def test_an_inline_credential_is_refused_without_repeating_it(base_dir: Path) -> None:
    text = DECLARED.replace("env:SHOP_EU_KEY", "ck_pasted-inline-0123456789")
    message = problems(text, base_dir)
    assert (
        "sources[0] (shop-eu).credentials.consumer_key: credentials are given as env:VAR or file:PATH"
        in message
    )
    assert "ck_pasted-inline-0123456789" not in message


def test_a_missing_variable_names_source_field_and_variable(base_dir: Path) -> None:
    message = problems(DECLARED, base_dir, {"SHOP_EU_KEY": SHOP_KEY})
    assert "sources[1] (erp-main).credentials.api_key: environment variable ERP_KEY is not set" in message


def test_a_missing_file_and_an_empty_variable_are_refused(base_dir: Path) -> None:
    (base_dir / "secrets" / "shop-eu-secret").unlink()
    message = problems(DECLARED, base_dir, {**ENV, "ERP_KEY": ""})
    assert "(shop-eu).credentials.consumer_secret: file" in message and "cannot be read" in message
    assert "(erp-main).credentials.api_key: env:ERP_KEY is empty" in message


def test_every_problem_is_reported_together(base_dir: Path) -> None:
    text = """
sources:
  - name: shop-eu
    kind: woocommerce
    url: https://shop-eu.shops.test
    credentials: {consumer_key: env:NOPE}
    options: {auth: digest}
    overrides: {page_size: 0, colour: red}
  - name: Bad_Name
    kind: odoo
    url: https://erp.shops.test
  - kind: woocommerce
    schedule: {every: 5}
"""
    message = problems(text, base_dir)
    for expected in (
        "sources[0] (shop-eu).credentials.consumer_key: environment variable NOPE is not set",
        "sources[0] (shop-eu).overrides.colour: unknown field",
        "sources[0] (shop-eu): page_size:",
        "sources[1] (Bad_Name): name:",
        "sources[2].schedule.every: unknown field",
        "sources[2]: name: Field required",
    ):
        assert expected in message


def test_a_bad_budget_override_names_its_source_and_field(base_dir: Path) -> None:
    text = DECLARED.replace("budget: {ceiling: 10}", "budget: {ceiling: fast, pace: 2}")
    message = problems(text, base_dir)
    assert "sources[0] (shop-eu): budget.ceiling: Input should be a valid number" in message
    assert "sources[0] (shop-eu): budget.pace: not a request budget setting" in message


def test_kind_checks_run_on_the_declared_sources(base_dir: Path) -> None:
    text = DECLARED.replace("{auth: basic}", "{auth: digest}").replace("username: sync", "protocol: soap")
    message = problems(text, base_dir)
    assert "sources[0] (shop-eu): option 'auth' must be one of basic, query" in message
    assert "sources[1] (erp-main): option 'username' is missing" in message
    assert "sources[1] (erp-main): option 'protocol' must be one of" in message


def test_duplicate_names_are_refused(base_dir: Path) -> None:
    doubled = DECLARED + DECLARED.split("sources:\n", 1)[1].split("  - name: erp-main")[0]
    assert "source 'shop-eu': declared more than once" in problems(doubled, base_dir)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: [", "not valid YAML at line"),
        ("- a\n- b\n", "the document: must be a mapping"),
        ("sources: {name: x}\n", "sources: must be a list"),
        ("source: []\n", "source: unknown top-level field"),
        ("sources:\n  - just-a-name\n", "sources[0]: must be a mapping"),
    ],
    ids=["bad-yaml", "not-a-mapping", "sources-not-a-list", "typo-at-top", "entry-not-a-mapping"],
)
def test_malformed_documents_are_refused(text: str, expected: str, base_dir: Path) -> None:
    assert expected in problems(text, base_dir)


def test_an_empty_list_declares_no_sources(base_dir: Path) -> None:
    assert load_declarations("sources: []\n", ENV, base_dir=base_dir) == []


def test_export_writes_references_never_values_and_reads_back(base_dir: Path) -> None:
    eu, erp = load_declarations(DECLARED, ENV, base_dir=base_dir)
    from_env = shop("woocommerce-products", from_environment=True)
    text = dump_declarations([eu, erp, from_env])
    for secret in (SHOP_KEY, SHOP_SECRET, "odoo-key-0123456789"):
        assert secret not in text
    document = yaml.safe_load(text)
    assert [s["name"] for s in document["sources"]] == ["shop-eu", "erp-main"]
    assert document["sources"][0]["credentials"] == {
        "consumer_key": "env:SHOP_EU_CONSUMER_KEY",
        "consumer_secret": "env:SHOP_EU_CONSUMER_SECRET",
    }
    assert document["sources"][1]["credentials"] == {"api_key": "env:ERP_MAIN_API_KEY"}
    assert document["sources"][0]["overrides"]["budget"] == {"ceiling": 10}
    assert "overrides" not in document["sources"][1]
    environ = {
        "SHOP_EU_CONSUMER_KEY": SHOP_KEY,
        "SHOP_EU_CONSUMER_SECRET": SHOP_SECRET,
        "ERP_MAIN_API_KEY": "odoo-key-0123456789",
    }
    assert load_declarations(text, environ, base_dir=base_dir) == [eu, erp]
