"""Rendering helpers: redaction, secret scrubbing, JSON of database values."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from worker.cli.output import cell, redact_url, scrub, to_json


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cretpw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("redis://:hunter22@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("sqlite:////var/lib/sw.db", "sqlite:////var/lib/sw.db"),
    ],
    ids=["user-and-password", "password-only", "no-credentials", "sqlite"],
)
def test_redact_url_hides_passwords_only(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_scrub_replaces_every_secret_longest_first() -> None:
    text = "failed for key ck_abcdef123 and ck_abcdef123456"
    assert scrub(text, ["ck_abcdef123", "ck_abcdef123456", ""]) == "failed for key *** and ***"


def test_to_json_handles_database_values() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    decoded = json.loads(to_json({"at": when, "price": Decimal("9.90")}))
    assert decoded == {"at": "2026-01-02T03:04:05+00:00", "price": "9.90"}


def test_to_json_refuses_unknown_types() -> None:
    with pytest.raises(TypeError, match="object"):
        to_json({"x": object()})


def test_cells_render_missing_values_and_utc_times() -> None:
    local = dt.datetime(2026, 1, 2, 4, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert cell(None) == "-"
    assert cell(local) == "2026-01-02 03:00:00"
    assert cell(1.23456) == "1.23"
    assert cell({"a": 1}) == '{"a": 1}'
