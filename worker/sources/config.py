"""One configured source, as the worker uses it: a name, a kind, where it is and how to get in.

Built from a ``sources`` row (credentials decrypted) or from the environment variables of a
single-shop deployment (``worker.sources.catalog``). Credentials are ``SecretStr``: printing a source,
logging it or putting it in an exception never shows them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Lower-case letters, digits and dashes: a name is used in Redis keys, metric labels and beat entries.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class SourceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: str
    url: str
    # Non-secret connection settings of the kind (Odoo: db, username, protocol; WooCommerce: auth).
    options: dict[str, str] = Field(default_factory=dict)
    credentials: dict[str, SecretStr] = Field(default_factory=dict, repr=False)
    enabled: bool = True
    # None: the fleet's default (SYNC_INCREMENTAL_INTERVAL_SECONDS, SYNC_FULL_CRON).
    incremental_interval_seconds: float | None = Field(None, gt=0)
    full_cron: str | None = None
    page_size: int | None = Field(None, ge=1, le=5000)
    concurrency: int | None = Field(None, ge=1, le=32)
    # Fields of the kind's breaker policy (BreakerSettings) that differ for this source.
    breaker: dict[str, Any] = Field(default_factory=dict)
    # Fields of the kind's request budget (BudgetSettings) that differ for this source; the host's
    # budget follows the lowest ceiling among the sources calling it at the time.
    budget: dict[str, Any] = Field(default_factory=dict)
    # True for the source a deployment configures with environment variables, not in the table.
    from_environment: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            msg = (
                "a source name is 1-63 lower-case letters, digits and dashes, starting with a letter or digit"
            )
            raise ValueError(msg)
        return value

    def secret(self, field: str) -> str:
        value = self.credentials.get(field)
        if value is None:
            msg = f"source {self.name!r} has no credential {field!r}"
            raise ValueError(msg)
        return value.get_secret_value()

    def secret_values(self) -> list[str]:
        """Every credential value, for redaction."""
        return [v.get_secret_value() for v in self.credentials.values() if v.get_secret_value()]
