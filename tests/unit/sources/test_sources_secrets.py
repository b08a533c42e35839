"""Credentials sealed with MultiFernet: round trip, a wrong key, rotation, and the keys' setting."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from source_samples import KEY_A, KEY_B, SHOP_SECRET

from worker.infra.settings import SettingsError
from worker.sources.secrets import CredentialCipher, SourceKeyError

CREDENTIALS = {"consumer_key": "ck_0123456789", "consumer_secret": SHOP_SECRET}


def plain(opened: dict[str, Any]) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in opened.items()}


def test_seal_then_open_gives_the_credentials_back_and_the_token_hides_them() -> None:
    cipher = CredentialCipher([KEY_A])
    token = cipher.seal(CREDENTIALS)
    assert SHOP_SECRET not in token and "consumer_secret" not in token
    opened = cipher.open(token, source="shop-eu")
    assert plain(opened) == CREDENTIALS
    assert SHOP_SECRET not in repr(opened)


def test_a_token_sealed_with_another_key_names_the_source_and_the_variable() -> None:
    token = CredentialCipher([KEY_A]).seal(CREDENTIALS)
    with pytest.raises(SourceKeyError) as info:
        CredentialCipher([KEY_B]).open(token, source="shop-eu")
    message = str(info.value)
    assert (
        "credentials of source 'shop-eu' cannot be decrypted with any key in SOURCES_ENCRYPTION_KEYS"
        in message
    )
    assert KEY_B not in message and SHOP_SECRET not in message


def test_rotation_moves_a_token_to_the_newest_key() -> None:
    old = CredentialCipher([KEY_A]).seal(CREDENTIALS)
    both = CredentialCipher([KEY_B, KEY_A])
    assert plain(both.open(old, source="s")) == CREDENTIALS  # the old key still opens it before rotation
    rotated = both.rotate(old, source="s")
    assert plain(CredentialCipher([KEY_B]).open(rotated, source="s")) == CREDENTIALS
    with pytest.raises(SourceKeyError):
        CredentialCipher([KEY_A]).open(rotated, source="s")


def test_rotating_a_token_no_key_opens_fails_naming_the_source() -> None:
    token = CredentialCipher([KEY_A]).seal(CREDENTIALS)
    with pytest.raises(SourceKeyError, match="'shop-us'"):
        CredentialCipher([KEY_B]).rotate(token, source="shop-us")


def test_seal_uses_the_newest_key() -> None:
    token = CredentialCipher([KEY_B, KEY_A]).seal(CREDENTIALS)
    assert plain(CredentialCipher([KEY_B]).open(token, source="s")) == CREDENTIALS


def test_from_settings_without_keys_says_how_to_make_one(settings_factory: Any) -> None:
    with pytest.raises(SourceKeyError) as info:
        CredentialCipher.from_settings(settings_factory())
    assert "SOURCES_ENCRYPTION_KEYS is not set" in str(info.value)
    assert "syncworker sources keygen" in str(info.value) and "Fernet.generate_key" in str(info.value)


def test_from_settings_reads_comma_separated_keys_newest_first(settings_factory: Any) -> None:
    settings = settings_factory(sources_encryption_keys=f" {KEY_B} , {KEY_A} ")
    token = CredentialCipher([KEY_A]).seal(CREDENTIALS)
    cipher = CredentialCipher.from_settings(settings)
    assert plain(cipher.open(token, source="s")) == CREDENTIALS
    assert plain(CredentialCipher([KEY_B]).open(cipher.seal(CREDENTIALS), source="s")) == CREDENTIALS
    assert KEY_A in settings.secret_values() and KEY_B in settings.secret_values()


def test_settings_name_the_bad_key_position_but_never_the_key(settings_factory: Any) -> None:
    bad = "not-a-fernet-key-but-a-secret-anyway"
    with pytest.raises(SettingsError) as info:
        settings_factory(sources_encryption_keys=f"{KEY_A},{bad}")
    message = str(info.value)
    assert "SOURCES_ENCRYPTION_KEYS: key 2 of 2 is not a valid Fernet key" in message
    assert bad not in message and KEY_A not in message


def test_a_cipher_refuses_an_invalid_key_without_quoting_it() -> None:
    with pytest.raises(SourceKeyError) as info:
        CredentialCipher([Fernet.generate_key().decode(), "short-secret-key"])
    assert "short-secret-key" not in str(info.value)
