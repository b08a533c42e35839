"""The one place the environment is read.

Settings are built once when the app starts and passed down. Validation collects every problem
and fails with one message that names each variable, so an operator fixes a bad deploy in one go.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
MIN_SECRET_LENGTH = 8
DEFAULT_SQLITE_URL = "sqlite:///syncworker.db"


class SettingsError(ValueError):
    """Configuration is unusable; the message names every offending variable."""


class BreakerSettings(BaseModel):
    """One upstream's breaker policy; overridden per upstream as ``<UPSTREAM>_BREAKER__<FIELD>``."""

    failure_threshold: int = Field(5, ge=1)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    window_seconds: float = Field(60.0, gt=0)
    minimum_calls: int = Field(10, ge=1)
    slow_call_seconds: float = Field(30.0, gt=0)
    open_seconds: float = Field(30.0, gt=0)
    open_backoff_multiplier: float = Field(2.0, ge=1)
    open_max_seconds: float = Field(600.0, gt=0)
    half_open_max_calls: int = Field(1, ge=1)
    permit_timeout_seconds: float = Field(120.0, gt=0)
    success_threshold: int = Field(2, ge=1)


class BudgetSettings(BaseModel):
    """One upstream kind's request budget per host; overridden as ``<UPSTREAM>_BUDGET__<FIELD>``.

    Rates are requests per second for the whole fleet (every worker process, every source) calling
    one host.
    """

    # The most the fleet sends one host; 0 turns the budget off for this kind.
    ceiling: float = Field(25.0, ge=0)
    # The lowest the rate goes: a host that still refuses at this rate counts against the breaker.
    floor: float = Field(0.5, gt=0)
    # Calls that may go back to back after an idle spell (GCRA burst tolerance).
    burst: int = Field(5, ge=1)
    # A refusal multiplies the rate by this (once per refusal burst).
    decrease: float = Field(0.75, gt=0, lt=1)
    # Requests per second regained per second of successes at the current rate (additive increase).
    increase: float = Field(0.5, gt=0)


class Settings(BaseSettings):
    """Every variable syncworker reads; documented in ``.env.example``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        case_sensitive=False,
        # pydantic's error text repeats the raw input, secrets included.
        hide_input_in_errors=True,
    )

    service_name: str = "syncworker"
    database_url: str = DEFAULT_SQLITE_URL
    # PostgreSQL ends a worker's transaction left idle this long (a run paused or cut off mid-page), so
    # the row locks it holds cannot keep the next run of its source waiting.
    database_idle_in_transaction_timeout_seconds: int = Field(60, ge=1)
    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_broker_url: str | None = None
    redis_key_prefix: str = "syncworker"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    allow_insecure_http: bool = False
    # `syncworker run` with nothing configured at all plays the demo; the image turns that off.
    demo_fallback: bool = True

    odoo_url: str | None = None
    odoo_db: str | None = None
    odoo_username: str | None = None
    odoo_api_key: SecretStr | None = None
    odoo_protocol: Literal["auto", "xmlrpc", "json2"] = "auto"
    odoo_page_size: int = Field(200, ge=1, le=5000)

    woocommerce_url: str | None = None
    woocommerce_consumer_key: SecretStr | None = None
    woocommerce_consumer_secret: SecretStr | None = None
    woocommerce_auth: Literal["basic", "query"] = "basic"
    woocommerce_page_concurrency: int = Field(4, ge=1, le=32)

    http_connect_timeout: float = Field(5.0, gt=0)
    http_read_timeout: float = Field(30.0, gt=0)
    http_max_response_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    http_max_redirects: int = Field(3, ge=0)
    # The whole time `syncworker health` gives one upstream's probes (version, credentials).
    health_upstream_timeout_seconds: float = Field(5.0, gt=0)

    retry_max_attempts: int = Field(5, ge=1)
    retry_max_delay_seconds: float = Field(120.0, gt=0)
    retry_initial_backoff_seconds: float = Field(1.0, gt=0)
    retry_max_backoff_seconds: float = Field(30.0, gt=0)
    retry_after_cap_seconds: float = Field(300.0, gt=0)

    odoo_breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    woocommerce_breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    woocommerce_budget: BudgetSettings = Field(default_factory=BudgetSettings)
    # Odoo documents no limit; its community keeps to about a call per second per database.
    odoo_budget: BudgetSettings = Field(default_factory=lambda: BudgetSettings(ceiling=10.0))
    # The share of a host's ceiling one process allows itself while Redis is unreachable.
    budget_degraded_share: float = Field(0.25, gt=0, le=1)
    # The longest a call sleeps for its slot; a longer pause (a long Retry-After) hands the run back.
    budget_max_wait_seconds: float = Field(30.0, gt=0)
    breaker_redis_socket_timeout: float = Field(0.25, gt=0)
    breaker_redis_retry_interval_seconds: float = Field(5.0, gt=0)

    sync_overlap_seconds: float = Field(120.0, ge=0)
    # Short: a heartbeat renews it every TTL/3, so a dead holder is recognised within seconds.
    sync_lock_ttl_seconds: float = Field(15.0, gt=0)
    sync_incremental_interval_seconds: float = Field(300.0, gt=0)
    sync_full_cron: str = "0 3 * * *"
    # How many sources one worker process keeps clients, HTTP pools and breakers for (least recently
    # used dropped first): a worker's memory stays flat however many sources the fleet carries.
    source_cache_size: int = Field(64, ge=1)
    # How often the leading beat reads the configured sources and updates their schedule entries.
    beat_sources_refresh_seconds: float = Field(30.0, gt=0)
    sync_max_redeliveries: int = Field(5, ge=1)
    # Days of history kept: sync_runs rows (the newest run of each source and mode always stays) and
    # event_log rows. At 500 sources every 5 minutes, one day is 144,000 runs.
    history_retention_days: int = Field(30, ge=1)
    event_retention_days: int = Field(90, ge=1)

    celery_visibility_timeout: int = Field(3600, gt=0)
    celery_task_soft_time_limit: int = Field(3000, gt=0)
    celery_task_time_limit: int = Field(3300, gt=0)
    celery_shutdown_escalate_seconds: float | None = Field(None, gt=0)

    event_spool_path: str = "syncworker-events.spool"
    metrics_port: int = Field(0, ge=0, le=65535)
    prometheus_multiproc_dir: str | None = None
    flower_port: int = Field(5555, ge=1, le=65535)
    flower_basic_auth: SecretStr | None = None

    # Fernet keys sealing the credentials of configured sources, comma-separated, newest first: the
    # newest encrypts, every one decrypts, so a key is rotated by prepending its successor.
    sources_encryption_keys: SecretStr | None = None

    @model_validator(mode="after")
    def _validate(self) -> Settings:
        problems = collect_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def odoo_enabled(self) -> bool:
        return bool(self.odoo_url)

    @property
    def woocommerce_enabled(self) -> bool:
        return bool(self.woocommerce_url)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver chosen for PostgreSQL."""
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    def source_keys(self) -> list[str]:
        """The keys of SOURCES_ENCRYPTION_KEYS, newest first (empty when unset)."""
        raw = self.sources_encryption_keys.get_secret_value() if self.sources_encryption_keys else ""
        keys = [k.strip() for k in raw.split(",")]
        return keys if any(keys) else []

    def secret_values(self) -> list[str]:
        """Every configured secret, for redaction."""
        secrets = [
            self.odoo_api_key,
            self.woocommerce_consumer_key,
            self.woocommerce_consumer_secret,
            self.flower_basic_auth,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None]
        values += self.source_keys()
        values += [p for p in (_url_password(self.database_url), _url_password(self.redis_url)) if p]
        if self.celery_broker_url:
            values += [p for p in (_url_password(self.celery_broker_url),) if p]
        return [v for v in values if v]


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def is_local_host(host: str) -> bool:
    if host in ("localhost",) or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problems(var: str, url: str, allow_insecure_http: bool) -> list[str]:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        return [f"{var}: not a valid URL ({exc})"]
    if parts.scheme not in ("http", "https"):
        return [f"{var}: must start with http:// or https:// (got {parts.scheme or 'no'} scheme)"]
    problems = []
    if not host:
        problems.append(f"{var}: has no host name")
    if any(host == d or host.endswith("." + d) for d in PLACEHOLDER_DOMAINS):
        problems.append(f"{var}: {host} is a documentation placeholder, not a real server")
    if parts.username or parts.password:
        problems.append(f"{var}: must not embed credentials; use the key variables instead")
    if parts.scheme == "http" and host and not is_local_host(host) and not allow_insecure_http:
        problems.append(
            f"{var}: plain http to {host} would send credentials in clear text; "
            "use https:// or set ALLOW_INSECURE_HTTP=true"
        )
    return problems


def _secret_problems(var: str, value: SecretStr | None) -> list[str]:
    raw = value.get_secret_value().strip() if value is not None else ""
    if not raw:
        return [f"{var}: is empty"]
    if len(raw) < MIN_SECRET_LENGTH:
        return [f"{var}: is implausibly short ({len(raw)} characters, expected at least {MIN_SECRET_LENGTH})"]
    return []


def _upstream_problems(
    name: str, url: str | None, required: dict[str, Any], secrets: dict[str, SecretStr | None]
) -> list[str]:
    values: dict[str, Any] = {f"{name}_URL": url, **required, **secrets}
    configured = [var for var, v in values.items() if v not in (None, "")]
    if not configured:
        return []
    missing = [var for var, v in values.items() if v in (None, "")]
    if missing:
        return [
            f"{var}: is not set, but {', '.join(configured)} is; set every {name}_* variable or none of them"
            for var in missing
        ]
    return []


def _fernet_key_problems(keys: list[str]) -> list[str]:
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            # The message names the position only: the key itself is a secret, even a broken one.
            problems.append(
                f"SOURCES_ENCRYPTION_KEYS: key {position} of {len(keys)} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; make one with `syncworker sources keygen`)"
            )
    return problems


def collect_problems(s: Settings) -> list[str]:
    """Every configuration problem, each naming its variable."""
    problems: list[str] = []
    problems += _upstream_problems(
        "ODOO",
        s.odoo_url,
        {"ODOO_DB": s.odoo_db, "ODOO_USERNAME": s.odoo_username},
        {"ODOO_API_KEY": s.odoo_api_key},
    )
    problems += _upstream_problems(
        "WOOCOMMERCE",
        s.woocommerce_url,
        {},
        {
            "WOOCOMMERCE_CONSUMER_KEY": s.woocommerce_consumer_key,
            "WOOCOMMERCE_CONSUMER_SECRET": s.woocommerce_consumer_secret,
        },
    )
    if s.odoo_url:
        problems += _url_problems("ODOO_URL", s.odoo_url, s.allow_insecure_http)
        if s.odoo_api_key is not None:
            problems += _secret_problems("ODOO_API_KEY", s.odoo_api_key)
    if s.woocommerce_url:
        problems += _url_problems("WOOCOMMERCE_URL", s.woocommerce_url, s.allow_insecure_http)
        for var, secret in (
            ("WOOCOMMERCE_CONSUMER_KEY", s.woocommerce_consumer_key),
            ("WOOCOMMERCE_CONSUMER_SECRET", s.woocommerce_consumer_secret),
        ):
            if secret is not None:
                problems += _secret_problems(var, secret)
    if not s.database_url.startswith(("postgres://", "postgresql", "sqlite")):
        problems.append("DATABASE_URL: must be a postgresql:// or sqlite:/// URL")
    for var, url in (("REDIS_URL", s.redis_url), ("CELERY_BROKER_URL", s.celery_broker_url)):
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://", "amqp://")):
            problems.append(f"{var}: must be a redis://, rediss:// or unix:// URL")
    if s.celery_task_time_limit >= s.celery_visibility_timeout:
        problems.append(
            "CELERY_TASK_TIME_LIMIT: must stay below CELERY_VISIBILITY_TIMEOUT "
            f"({s.celery_task_time_limit} >= {s.celery_visibility_timeout}), "
            "or Redis redelivers a task that is still running"
        )
    if s.celery_task_soft_time_limit >= s.celery_task_time_limit:
        problems.append("CELERY_TASK_SOFT_TIME_LIMIT: must be below CELERY_TASK_TIME_LIMIT")
    if s.retry_after_cap_seconds >= s.celery_visibility_timeout:
        problems.append("RETRY_AFTER_CAP_SECONDS: must stay below CELERY_VISIBILITY_TIMEOUT")
    for upstream, bs in (("ODOO", s.odoo_breaker), ("WOOCOMMERCE", s.woocommerce_breaker)):
        if bs.open_max_seconds >= s.celery_visibility_timeout:
            problems.append(
                f"{upstream}_BREAKER__OPEN_MAX_SECONDS: must stay below CELERY_VISIBILITY_TIMEOUT, "
                "since tasks reschedule themselves for the breaker's retry-after"
            )
        if bs.open_max_seconds < bs.open_seconds:
            problems.append(f"{upstream}_BREAKER__OPEN_MAX_SECONDS: must be >= OPEN_SECONDS")
    if s.budget_max_wait_seconds >= s.celery_task_soft_time_limit:
        problems.append(
            "BUDGET_MAX_WAIT_SECONDS: must stay below CELERY_TASK_SOFT_TIME_LIMIT, "
            "or a call waiting for its slot outlives the task"
        )
    for upstream, budget in (("ODOO", s.odoo_budget), ("WOOCOMMERCE", s.woocommerce_budget)):
        if budget.ceiling and budget.floor > budget.ceiling:
            problems.append(f"{upstream}_BUDGET__FLOOR: must not exceed {upstream}_BUDGET__CEILING")
    if s.flower_basic_auth is not None and ":" not in s.flower_basic_auth.get_secret_value():
        problems.append("FLOWER_BASIC_AUTH: must be user:password")
    problems += _fernet_key_problems(s.source_keys())
    return problems


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = "__".join(str(p) for p in err["loc"]).upper()
        msg = str(err["msg"]).removeprefix("Value error, ")
        if loc:
            lines.append(f"{loc}: {msg}")
        else:
            lines.extend(msg.splitlines())
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and ``.env``), raising ``SettingsError`` on any problem."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_format_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
