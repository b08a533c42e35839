"""Redactor: configured secrets and credential-looking values never survive, whatever the structure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.infra.redaction import (
    MASK,
    Redactor,
    forget_secrets,
    is_sensitive_key,
    jsonable,
    learn_secrets,
    truncate,
)

SECRET = "cs_0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://shop.test/wp-json/wc/v3/products?consumer_key=ck_1a2b3c&consumer_secret=cs_9z8y&page=2",
            "GET https://shop.test/wp-json/wc/v3/products?consumer_key=***&consumer_secret=***&page=2",
        ),
        ("Authorization: Basic Y2tfMTIzOmNzXzQ1Ng==", "Authorization: *** ***"),
        ("sent bearer eyJhbGciOi.eyJzdWIi.sig_123 upstream", "sent bearer *** upstream"),
        ('{"password": "hunter22", "user": "bob"}', '{"password": "***", "user": "bob"}'),
        ("X-Api-Key: 1234abcd", "X-Api-Key: ***"),
        ("apikey=abcd;next=1", "apikey=***;next=1"),
        ("access_token=tok123&x=1", "access_token=***&x=1"),
        ("basic authentication failed", "basic authentication failed"),
        ("token expired at 12:00", "token expired at 12:00"),
        ("page=2&per_page=100", "page=2&per_page=100"),
        (f"auth failed with {SECRET} (see docs)", "auth failed with *** (see docs)"),
        ("url encoded cs_0123456789abcdef%21 stays", "url encoded ***%21 stays"),
    ],
    ids=[
        "query-string",
        "basic-header",
        "bearer-token",
        "json-body",
        "api-key-header",
        "apikey-param",
        "access-token",
        "prose-basic",
        "prose-token",
        "harmless-params",
        "configured-secret",
        "secret-before-encoding",
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert Redactor([SECRET]).scrub_text(text) == expected


def test_percent_encoded_secret_is_masked() -> None:
    redactor = Redactor(["p@ss/word+1"])
    assert redactor.scrub_text("https://db/?pw=p%40ss%2Fword%2B1&x=1") == "https://db/?pw=***&x=1"
    assert redactor.scrub_text("q=p%40ss%2Fword%2B1") == "q=***"


def test_scrub_masks_sensitive_keys_in_structures() -> None:
    data = {
        "headers": {"Authorization": "Basic abc", "Content-Type": "json", "Cookie": "sid=1"},
        "params": [{"consumer_key": "ck_x", "page": 3}, ("api_key", "plain")],
        "password": None,
        "count": 5,
        SECRET: "secret used as a key",
    }
    out = Redactor([SECRET]).scrub(data)
    assert out["headers"] == {"Authorization": MASK, "Content-Type": "json", "Cookie": MASK}
    assert out["params"][0] == {"consumer_key": MASK, "page": 3}
    assert out["params"][1] == ("api_key", "plain")  # a tuple's items are not keys
    assert out["password"] is None
    assert out["count"] == 5
    assert out[MASK] == "secret used as a key"
    assert data["headers"]["Authorization"] == "Basic abc"  # the input is not modified


def test_key_limits_apply_to_the_subtree() -> None:
    out = Redactor([]).scrub(
        {"response": {"body": "b" * 3000}, "other": "o" * 3000}, limit=2000, key_limits={"response": 100}
    )
    assert len(out["response"]["body"]) == 100
    assert len(out["other"]) == 2000


def test_truncate_says_how_much_was_cut() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("x" * 5000, 1000)
    assert len(cut) == 1000
    kept = cut.index("...[truncated")
    assert cut.endswith(f"...[truncated {5000 - kept} chars]")
    assert truncate("abcdef", 3) == "abc"


def test_a_secret_straddling_the_precut_never_leaks_its_head() -> None:
    redactor = Redactor([SECRET])
    for offset in range(len(SECRET) + 2):
        text = "a" * (4 * 10 + len(SECRET) + 64 - offset) + SECRET + "tail"
        out = redactor.scrub_text(text, 10)
        assert SECRET[:5] not in out
        assert len(out) <= 10


def test_short_secrets_are_ignored_rather_than_masking_ordinary_text() -> None:
    assert Redactor(["ab", ""]).scrub_text("about a cab") == "about a cab"


def test_sensitive_key_names() -> None:
    for key in (
        "Authorization",
        "consumer_key",
        "CONSUMER-SECRET",
        "password",
        "X-Api-Key",
        "apikey",
        "token",
    ):
        assert is_sensitive_key(key)
    for key in ("page", "status", "url", "sku"):
        assert not is_sensitive_key(key)


def test_jsonable_output_is_valid_json() -> None:
    from datetime import UTC, datetime
    from decimal import Decimal
    from enum import Enum

    class Color(Enum):
        RED = "red"

    value = {
        "when": datetime(2026, 1, 1, tzinfo=UTC),
        "amount": Decimal("1.10"),
        "color": Color.RED,
        "items": set(range(600)),
        "inf": float("inf"),
        1: b"\x00\x01",
    }
    out = jsonable(value)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["amount"] == "1.10"
    assert out["color"] == "red"
    assert len(out["items"]) == 501
    assert out["1"] == "\\u0000\x01"


# -- properties --------------------------------------------------------------------------------------

secrets_st = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=40
).filter(lambda s: s.strip() == s and s != "")
words = st.text(max_size=30)


def embed(draw: Any, secret: str) -> str:
    before, after = draw(words), draw(words)
    return before + secret + after


@st.composite
def structure_with_secret(draw: Any) -> tuple[str, Any]:
    secret = draw(secrets_st)
    leaf = st.builds(lambda b, a: b + secret + a, words, words) | words | st.integers() | st.none()
    tree = st.recursive(
        leaf,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(words | st.builds(lambda b: b + secret, words), children, max_size=4)
            | st.tuples(children, children)
        ),
        max_leaves=12,
    )
    planted = embed(draw, secret)
    return secret, [draw(tree), planted]


@settings(max_examples=100, deadline=None)
@given(structure_with_secret())
def test_a_configured_secret_never_survives_anywhere(case: tuple[str, Any]) -> None:
    secret, data = case
    out = Redactor([secret]).scrub(data)
    assert secret not in repr(out)
    assert secret not in json.dumps(jsonable(out), ensure_ascii=False)


@settings(max_examples=150, deadline=None)
@given(secrets_st, words, words, st.integers(min_value=1, max_value=200))
def test_a_secret_never_survives_truncation(secret: str, before: str, after: str, limit: int) -> None:
    out = Redactor([secret]).scrub_text(before + secret + after + secret, limit)
    assert secret not in out
    assert len(out) <= limit


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["consumer_key", "consumer_secret", "password", "api_key", "apikey", "token"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.~", min_size=1, max_size=30),
    words,
)
def test_credential_parameters_are_masked(name: str, value: str, prefix: str) -> None:
    text = f"https://shop.test/x?{name}={value}&page=1 {prefix}"
    out = Redactor([]).scrub_text(text)
    assert f"{name}=***&page=1" in out


def test_a_source_loaded_after_start_up_is_scrubbed_until_its_client_is_gone() -> None:
    # Every redactor of the process, made before or after, learns a source's credentials when it loads.
    early = Redactor([])
    learn_secrets(["cs_learned-0123456789"])
    try:
        assert early.scrub_text("body: cs_learned-0123456789 end") == f"body: {MASK} end"
        assert Redactor([]).scrub({"msg": "with cs_learned-0123456789"}) == {"msg": f"with {MASK}"}
    finally:
        forget_secrets(["cs_learned-0123456789"])
    assert "cs_learned-0123456789" in early.scrub_text("id cs_learned-0123456789")  # no longer searched for


def test_a_credential_two_sources_share_stays_masked_until_both_are_gone() -> None:
    shared = "odoo-key-shared-0123456789"
    learn_secrets([shared])  # erp-a
    learn_secrets([shared])  # erp-b, the same key on another database
    redactor = Redactor([])
    try:
        forget_secrets([shared])  # erp-a's client dropped from the cache
        assert redactor.scrub_text(f"key {shared}") == f"key {MASK}"
    finally:
        forget_secrets([shared])
    assert shared in redactor.scrub_text(f"key {shared}")
