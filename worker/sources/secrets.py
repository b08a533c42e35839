"""Credentials sealed at rest: JSON encrypted with the newest key of SOURCES_ENCRYPTION_KEYS.

``MultiFernet`` decrypts with any listed key and encrypts with the first, so a key is rotated by
prepending a new one, running ``syncworker sources rotate-keys``, and then dropping the old one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from worker.infra.settings import Settings

KEYGEN_HINT = (
    "make one with `syncworker sources keygen` or "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
)


class SourceKeyError(ValueError):
    """No usable key in SOURCES_ENCRYPTION_KEYS for what was asked; never quotes a key or a credential."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


class CredentialCipher:
    """Seals and opens the credentials of sources; the first key is the newest."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            msg = f"SOURCES_ENCRYPTION_KEYS is not set: configured sources need it; {KEYGEN_HINT}"
            raise SourceKeyError(msg)
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            msg = f"SOURCES_ENCRYPTION_KEYS holds a key that is not a valid Fernet key; {KEYGEN_HINT}"
            raise SourceKeyError(msg) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialCipher:
        return cls(settings.source_keys())

    def seal(self, credentials: Mapping[str, str]) -> str:
        """The credentials as one token, encrypted with the newest key."""
        plain = json.dumps(dict(credentials), sort_keys=True).encode()
        return self._fernet.encrypt(plain).decode()

    def open(self, token: str, *, source: str) -> dict[str, SecretStr]:
        """The credentials of ``source`` sealed in ``token``.

        Raises:
            SourceKeyError: no key in SOURCES_ENCRYPTION_KEYS decrypts it.
        """
        try:
            plain = self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise SourceKeyError(_undecryptable(source)) from None
        return {field: SecretStr(value) for field, value in json.loads(plain).items()}

    def rotate(self, token: str, *, source: str) -> str:
        """The same credentials, re-encrypted with the newest key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SourceKeyError(_undecryptable(source)) from None


def _undecryptable(source: str) -> str:
    return (
        f"credentials of source {source!r} cannot be decrypted with any key in SOURCES_ENCRYPTION_KEYS: "
        "add the key they were sealed with (newest first)"
    )
