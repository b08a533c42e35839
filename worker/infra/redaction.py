"""Scrubbing secrets out of anything that is logged or stored.

Two nets, because either alone leaks: the configured secret values are replaced wherever they appear
(they may turn up in an error message or an echoed URL), and values that merely *look* like credentials
(an ``Authorization`` header, ``?consumer_key=...``) are masked even when we never configured them.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from enum import Enum
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# A secret shorter than this would mask ordinary words; settings already reject short API keys.
MIN_SECRET_LENGTH = 4
# Bounds for ``jsonable`` so a huge or self-referencing structure cannot stall a log call.
MAX_DEPTH = 20
MAX_ITEMS = 500

# Substrings of a key or parameter name that mark its value as a credential.
_SENSITIVE_WORDS = (
    r"authorization|consumer[_-]?key|consumer[_-]?secret|password|passwd|api[_-]?key|apikey"
    r"|token|secret|signature|cookie"
)
_SENSITIVE_KEY = re.compile(_SENSITIVE_WORDS, re.IGNORECASE)

# "Basic dXNlcjpwYXNz" / "Bearer abc.def": the credential must contain a digit or base64 punctuation,
# so prose such as "basic authentication failed" survives.
_AUTH_SCHEME = re.compile(
    r"\b(basic|bearer)(\s+)(?=[A-Za-z0-9._~+/=-]*[0-9+/=_])[A-Za-z0-9._~+/=-]{6,}",
    re.IGNORECASE,
)
# name=value, name: value, "name": "value" -- in query strings, headers dumped as text, JSON bodies.
# Only the name and separator are matched, so a value ("//host/?consumer_key") never hides the next name;
# searching for the sensitive word inside the regex instead made it quadratic on long words.
_NAME_SEPARATOR = re.compile(r"(?<![\w-])([\w-]+)([\"']?\s*[:=]\s*[\"']?)")
_VALUE = re.compile(r"[^\"'&\s,;}\]=]+")


def is_sensitive_key(key: str) -> bool:
    """True for keys such as ``Authorization``, ``consumer_secret`` or ``X-Api-Key``."""
    return bool(_SENSITIVE_KEY.search(key))


def _mask_key_values(text: str) -> str:
    parts: list[str] = []
    pos = 0
    for match in _NAME_SEPARATOR.finditer(text):
        if match.start() < pos or not is_sensitive_key(match.group(1)):
            continue
        value = _VALUE.match(text, match.end())
        if value is not None:
            parts += [text[pos : match.end()], MASK]
            pos = value.end()
    parts.append(text[pos:])
    return "".join(parts)


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters; a cut text ends by saying how many characters were dropped."""
    if len(text) <= limit:
        return text
    keep = limit
    while keep > 0:
        marker = f"...[truncated {len(text) - keep} chars]"
        if keep + len(marker) <= limit:
            return text[:keep] + marker
        keep = limit - len(marker) if keep > limit - len(marker) else keep - 1
    return text[:limit]  # too short for the marker


def _variants(secrets: Iterable[str]) -> set[str]:
    variants: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            # The same secret percent-encoded, as it appears in a logged URL.
            variants.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    return variants


# Secrets this process learned after start-up: the credentials of each source it loads from the
# ``sources`` table. Every redactor of the process scrubs them too.
# Counted: two sources may share a credential, and forgetting one must not unmask the other's.
_LEARNED: Counter[str] = Counter()
# Moves on every change of the set of learned secrets, so a redactor rebuilds its list only then.
_generation = [0]


def learn_secrets(secrets: Iterable[str]) -> None:
    """Scrub these values from every log line and event of this process from now on."""
    variants = _variants(secrets)
    if variants - _LEARNED.keys():
        _generation[0] += 1
    _LEARNED.update(variants)


def forget_secrets(secrets: Iterable[str]) -> None:
    """Stop looking for these once no loaded source has them (scrubbing costs grow with the secrets known)."""
    for variant in _variants(secrets):
        if _LEARNED[variant] <= 1:
            _LEARNED.pop(variant, None)
            _generation[0] += 1
        else:
            _LEARNED[variant] -= 1


class Redactor:
    """Replaces configured secrets and credential-looking values with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._configured = _variants(secrets)
        self._learned = -1
        self._refresh()

    def _refresh(self) -> None:
        if self._learned == _generation[0]:
            return
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(self._configured | _LEARNED.keys(), key=len, reverse=True)
        self._longest = len(self._secrets[0]) if self._secrets else 0
        self._learned = _generation[0]

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        """A redactor for every secret configured in ``settings`` (a ``worker.infra.settings.Settings``)."""
        return cls(settings.secret_values())

    def scrub_text(self, text: str, limit: int | None = None) -> str:
        """The text without secrets, then truncated to ``limit`` characters."""
        self._refresh()
        if limit is not None:
            # Scrubbing a 50 MB body to keep 1,000 characters is waste; cut generously first,
            # but never through the middle of a secret (its head would then escape the replacement).
            text = self._precut(text, 4 * limit + self._longest + 64)
        # Known secrets first: a pattern could otherwise mask half of one and leave the rest unmatched.
        text = self._replace_secrets(text)
        text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        text = _mask_key_values(text)
        text = self._replace_secrets(text)
        return truncate(text, limit) if limit is not None else text

    def scrub(
        self,
        obj: Any,
        *,
        limit: int | None = None,
        key_limits: Mapping[str, int] | None = None,
    ) -> Any:
        """A copy of ``obj`` (dicts, lists, tuples, strings) with every secret masked.

        ``limit`` truncates every string; ``key_limits`` sets another limit for the subtree under a key
        (e.g. ``{"response": 1000}``). Other scalars are returned unchanged.
        """
        key_limits = key_limits or {}
        if isinstance(obj, str):
            return self.scrub_text(obj, limit)
        if isinstance(obj, Mapping):
            out: dict[Any, Any] = {}
            for key, value in obj.items():
                name = self.scrub_text(key) if isinstance(key, str) else key
                if isinstance(key, str) and is_sensitive_key(key) and value is not None:
                    out[name] = MASK
                    continue
                child_limit = key_limits.get(key.lower(), limit) if isinstance(key, str) else limit
                out[name] = self.scrub(value, limit=child_limit, key_limits=key_limits)
            return out
        if isinstance(obj, list | tuple):
            items = [self.scrub(v, limit=limit, key_limits=key_limits) for v in obj]
            return items if isinstance(obj, list) else tuple(items)
        return obj

    def _replace_secrets(self, text: str) -> str:
        # Replacing can join the text around a secret into another occurrence ("a" + "***"), so repeat
        # until nothing is left; each pass shrinks the text, so this ends.
        changed = True
        while changed:
            changed = False
            for secret in self._secrets:
                if secret in text:
                    text = text.replace(secret, MASK)
                    changed = True
        return text

    def _precut(self, text: str, cut: int) -> str:
        if len(text) <= cut:
            return text
        moved = True
        while moved:
            moved = False
            for secret in self._secrets:
                start = text.find(secret, max(0, cut - len(secret) + 1), cut + len(secret))
                if 0 <= start < cut < start + len(secret):
                    cut, moved = start + len(secret), True
        return text[:cut]


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON types: datetimes, decimals, bytes, exceptions and the like become text.

    PostgreSQL's JSONB refuses NUL characters and NaN, so both are rewritten too.
    """
    if _depth > MAX_DEPTH:
        return "...[nested too deep]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, Enum):
        return jsonable(value.value, _depth + 1)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return jsonable(bytes(value).decode("utf-8", errors="replace"), _depth + 1)
    if isinstance(value, BaseException):
        return jsonable(f"{type(value).__name__}: {value}", _depth + 1)
    if isinstance(value, Mapping):
        return {str(jsonable(k, _depth + 1)): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v, _depth + 1) for v in itertools.islice(value, MAX_ITEMS)]
        if len(value) > MAX_ITEMS:
            items.append(f"...[{len(value) - MAX_ITEMS} more items]")
        return items
    # Decimal, UUID, Path and anything else: their text form is what a reader wants.
    return jsonable(str(value), _depth + 1)
