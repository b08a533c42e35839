"""Settings: each validation rule and its message, nested overrides, secrets out of text, .env.example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from worker.infra.settings import Settings, SettingsError, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[3] / ".env.example"
CANARY_KEY = "ck_canary_0d9e8f7a6b"
CANARY_SECRET = "cs_canary_1a2b3c4d5e"
CANARY_ODOO = "odoo_canary_9f8e7d6c"
CANARY_FLOWER = "admin:flower_canary_42"

WOO_OK = {
    "woocommerce_url": "https://shop.test",
    "woocommerce_consumer_key": CANARY_KEY,
    "woocommerce_consumer_secret": CANARY_SECRET,
}
ODOO_OK = {
    "odoo_url": "https://odoo.test",
    "odoo_db": "prod",
    "odoo_username": "sync@odoo.test",
    "odoo_api_key": CANARY_ODOO,
}


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests control every variable; a developer's shell must not leak in.
    for name in expected_variables() | {n.upper() for n in Settings.model_fields}:
        monkeypatch.delenv(name, raising=False)


def load(**values: Any) -> Settings:
    return load_settings(_env_file=None, **values)


def problems(**values: Any) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(**values)
    message = str(info.value)
    assert message.startswith("invalid configuration:\n")
    return [line.strip() for line in message.splitlines()[1:]]


def test_defaults_are_valid_and_upstreams_disabled() -> None:
    settings = load()
    assert not settings.odoo_enabled and not settings.woocommerce_enabled
    assert settings.broker_url == settings.redis_url


def test_fully_configured_upstreams_are_valid() -> None:
    settings = load(**WOO_OK, **ODOO_OK)
    assert settings.odoo_enabled and settings.woocommerce_enabled
    assert settings.woocommerce_consumer_secret is not None
    assert settings.woocommerce_consumer_secret.get_secret_value() == CANARY_SECRET


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"woocommerce_url": "ftp://shop.test"},
            "WOOCOMMERCE_URL: must start with http:// or https:// (got ftp scheme)",
        ),
        ({"odoo_url": "odoo.test"}, "ODOO_URL: must start with http:// or https:// (got no scheme)"),
        (
            {"woocommerce_url": "https://shop.example.com"},
            "WOOCOMMERCE_URL: shop.example.com is a documentation placeholder, not a real server",
        ),
        ({"odoo_url": "https://example.org"}, "ODOO_URL: example.org is a documentation placeholder"),
        (
            {"odoo_url": "https://erp.example.net/odoo"},
            "ODOO_URL: erp.example.net is a documentation placeholder",
        ),
        (
            {"woocommerce_url": "https://admin:pw12345678@shop.test"},
            "WOOCOMMERCE_URL: must not embed credentials; use the key variables instead",
        ),
        (
            {"woocommerce_url": "http://shop.test"},
            "WOOCOMMERCE_URL: plain http to shop.test would send credentials in clear text; "
            "use https:// or set ALLOW_INSECURE_HTTP=true",
        ),
        ({"woocommerce_url": "https://"}, "WOOCOMMERCE_URL: has no host name"),
        ({"woocommerce_consumer_key": ""}, "WOOCOMMERCE_CONSUMER_KEY: is empty"),
        ({"woocommerce_consumer_secret": "   "}, "WOOCOMMERCE_CONSUMER_SECRET: is empty"),
        (
            {"woocommerce_consumer_key": "ck_1234"},
            "WOOCOMMERCE_CONSUMER_KEY: is implausibly short (7 characters, expected at least 8)",
        ),
        ({"odoo_api_key": "abc"}, "ODOO_API_KEY: is implausibly short (3 characters, expected at least 8)"),
        ({"database_url": "mysql://db/x"}, "DATABASE_URL: must be a postgresql:// or sqlite:/// URL"),
        ({"redis_url": "http://cache:6379"}, "REDIS_URL: must be a redis://, rediss:// or unix:// URL"),
        (
            {"celery_broker_url": "kafka://b"},
            "CELERY_BROKER_URL: must be a redis://, rediss:// or unix:// URL",
        ),
        (
            {"celery_task_time_limit": 4000, "celery_task_soft_time_limit": 3900},
            "CELERY_TASK_TIME_LIMIT: must stay below CELERY_VISIBILITY_TIMEOUT (4000 >= 3600)",
        ),
        (
            {"celery_task_soft_time_limit": 3300},
            "CELERY_TASK_SOFT_TIME_LIMIT: must be below CELERY_TASK_TIME_LIMIT",
        ),
        (
            {"retry_after_cap_seconds": 3600},
            "RETRY_AFTER_CAP_SECONDS: must stay below CELERY_VISIBILITY_TIMEOUT",
        ),
        (
            {"odoo_breaker": {"open_max_seconds": 4000}},
            "ODOO_BREAKER__OPEN_MAX_SECONDS: must stay below CELERY_VISIBILITY_TIMEOUT",
        ),
        (
            {"woocommerce_breaker": {"open_seconds": 60, "open_max_seconds": 30}},
            "WOOCOMMERCE_BREAKER__OPEN_MAX_SECONDS: must be >= OPEN_SECONDS",
        ),
        (
            {"budget_max_wait_seconds": 3000},
            "BUDGET_MAX_WAIT_SECONDS: must stay below CELERY_TASK_SOFT_TIME_LIMIT",
        ),
        (
            {"woocommerce_budget": {"ceiling": 5, "floor": 10}},
            "WOOCOMMERCE_BUDGET__FLOOR: must not exceed WOOCOMMERCE_BUDGET__CEILING",
        ),
        (
            {"odoo_budget": {"decrease": 1.5}},
            "ODOO_BUDGET__DECREASE: Input should be less than 1",
        ),
        ({"flower_basic_auth": "nocolonhere"}, "FLOWER_BASIC_AUTH: must be user:password"),
        ({"odoo_page_size": 0}, "ODOO_PAGE_SIZE: Input should be greater than or equal to 1"),
        ({"log_format": "xml"}, "LOG_FORMAT: Input should be 'json' or 'console'"),
        (
            {"woocommerce_breaker": {"failure_threshold": 0}},
            "WOOCOMMERCE_BREAKER__FAILURE_THRESHOLD: Input should be greater than or equal to 1",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_each_rule_names_its_variable(overrides: dict[str, Any], expected: str) -> None:
    values = {**ODOO_OK, **WOO_OK, **overrides}
    found = problems(**values)
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(
    "url", ["http://localhost:8069", "http://127.0.0.1:8080", "http://[::1]:8080", "http://odoo.localhost"]
)
def test_plain_http_to_a_local_host_is_fine(url: str) -> None:
    assert load(**{**ODOO_OK, "odoo_url": url}).odoo_url == url


def test_plain_http_elsewhere_is_allowed_only_explicitly() -> None:
    settings = load(**{**WOO_OK, "woocommerce_url": "http://shop.internal", "allow_insecure_http": True})
    assert settings.woocommerce_url == "http://shop.internal"


def test_a_partly_configured_upstream_names_every_missing_variable() -> None:
    found = problems(odoo_url="https://odoo.test", odoo_db="prod")
    assert found == [
        "ODOO_USERNAME: is not set, but ODOO_URL, ODOO_DB is; set every ODOO_* variable or none of them",
        "ODOO_API_KEY: is not set, but ODOO_URL, ODOO_DB is; set every ODOO_* variable or none of them",
    ]
    found = problems(woocommerce_consumer_key=CANARY_KEY)
    assert {line.split(":")[0] for line in found} == {"WOOCOMMERCE_URL", "WOOCOMMERCE_CONSUMER_SECRET"}


def test_every_problem_is_reported_in_one_message() -> None:
    found = problems(
        odoo_url="http://odoo.example.com",
        odoo_db="prod",
        odoo_username="u",
        odoo_api_key="short",
        woocommerce_url="ftp://user:pw@shop.test",
        woocommerce_consumer_key="ck",
        woocommerce_consumer_secret=CANARY_SECRET,
        redis_url="http://r",
    )
    named = [line.split(":")[0] for line in found]
    assert named == [
        "ODOO_URL",
        "ODOO_URL",
        "ODOO_API_KEY",
        "WOOCOMMERCE_URL",
        "WOOCOMMERCE_CONSUMER_KEY",
        "REDIS_URL",
    ]


def test_variables_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOOCOMMERCE_URL", "https://shop.test")
    monkeypatch.setenv("woocommerce_consumer_key", CANARY_KEY)  # names are case-insensitive
    monkeypatch.setenv("WOOCOMMERCE_CONSUMER_SECRET", CANARY_SECRET)
    monkeypatch.setenv("WOOCOMMERCE_BREAKER__FAILURE_THRESHOLD", "3")
    monkeypatch.setenv("ODOO_BREAKER__OPEN_SECONDS", "45.5")
    settings = load()
    assert settings.woocommerce_enabled
    assert settings.woocommerce_breaker.failure_threshold == 3
    assert settings.odoo_breaker.failure_threshold == 5  # the other upstream keeps its defaults
    assert settings.odoo_breaker.open_seconds == 45.5
    assert settings.woocommerce_breaker.open_seconds == 30.0


def test_a_bad_nested_override_from_the_environment_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODOO_BREAKER__FAILURE_RATE_THRESHOLD", "1.5")
    found = problems()
    assert found == ["ODOO_BREAKER__FAILURE_RATE_THRESHOLD: Input should be less than or equal to 1"]


def test_variables_are_read_from_an_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        f"WOOCOMMERCE_URL=https://shop.test\nWOOCOMMERCE_CONSUMER_KEY={CANARY_KEY}\n"
        f"WOOCOMMERCE_CONSUMER_SECRET={CANARY_SECRET}\nLOG_FORMAT=console\n"
    )
    settings = load_settings(_env_file=str(env))
    assert settings.woocommerce_enabled and settings.log_format == "console"


def test_postgres_urls_get_the_psycopg_driver() -> None:
    assert load(database_url="postgres://u@db/x").sqlalchemy_url == "postgresql+psycopg://u@db/x"
    assert load(database_url="sqlite:///a.db").sqlalchemy_url == "sqlite:///a.db"


def test_secret_values_lists_every_configured_secret() -> None:
    settings = load(
        **WOO_OK,
        **ODOO_OK,
        flower_basic_auth=CANARY_FLOWER,
        database_url="postgresql://sync:dbpass_canary@db/x",
        redis_url="redis://:redispass_canary@cache:6379/0",
    )
    assert set(settings.secret_values()) == {
        CANARY_KEY,
        CANARY_SECRET,
        CANARY_ODOO,
        CANARY_FLOWER,
        "dbpass_canary",
        "redispass_canary",
    }


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = load(**WOO_OK, **ODOO_OK, flower_basic_auth=CANARY_FLOWER)
    for text in (repr(settings), str(settings), repr(settings.model_dump()), settings.model_dump_json()):
        for secret in (CANARY_KEY, CANARY_SECRET, CANARY_ODOO, CANARY_FLOWER):
            assert secret not in text


@pytest.mark.parametrize(
    "bad",
    [
        {"woocommerce_url": "http://shop.test"},
        {"woocommerce_url": "https://shop.example.com"},
        {"woocommerce_consumer_key": "ck_shrt"},
        {"odoo_page_size": "lots"},
        {"flower_basic_auth": "flowernocolon_canary"},
    ],
    ids=["insecure-http", "placeholder", "short-key", "type-error", "flower"],
)
def test_secrets_never_appear_in_validation_errors(bad: dict[str, Any]) -> None:
    values = {**WOO_OK, **ODOO_OK, "flower_basic_auth": CANARY_FLOWER, **bad}
    secrets = [CANARY_KEY, CANARY_SECRET, CANARY_ODOO, CANARY_FLOWER, "ck_shrt", "flowernocolon_canary"]
    with pytest.raises(SettingsError) as info:
        load(**values)
    # Building Settings directly raises pydantic's own error; its text must not echo the input either.
    with pytest.raises(ValidationError) as raw:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    for text in (str(info.value), repr(info.value), str(raw.value), repr(raw.value)):
        for secret in secrets:
            assert secret not in text


# -- .env.example ----------------------------------------------------------------------------------------


def documented_variables() -> dict[str, tuple[str, str]]:
    """``NAME -> (default shown, comment line above it)`` for every ``# NAME=value`` line."""
    found: dict[str, tuple[str, str]] = {}
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found[match.group(1)] = (match.group(2), lines[i - 1])
    return found


def expected_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names |= {f"{name}__{sub}".upper() for sub in nested.model_fields}
        else:
            names.add(name.upper())
    return names


def test_env_example_documents_every_setting() -> None:
    documented = documented_variables()
    assert set(documented) == expected_variables()
    for name, (_, comment) in documented.items():
        assert comment.startswith("# ") and "=" not in comment.split()[1], f"{name} has no comment above it"


def test_env_example_shows_the_real_defaults(tmp_path: Path) -> None:
    # Uncomment every variable that shows a value and load it: the result must equal the defaults.
    env = tmp_path / ".env"
    env.write_text(
        "".join(f"{name}={value}\n" for name, (value, _) in documented_variables().items() if value)
    )
    assert load_settings(_env_file=str(env)) == load()
