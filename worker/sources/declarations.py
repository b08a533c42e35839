"""The YAML a fleet's sources are declared in, for review and GitOps: credentials only by reference.

A credential is ``env:VAR`` or ``file:PATH``, resolved when the file is applied, so the file itself
can live in git. ``dump_declarations`` writes the same format back, with ``env:`` references named
after the source and field in place of every value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from worker.sources.checks import source_problems
from worker.sources.config import SourceConfig
from worker.sources.store import InvalidSource, build

INLINE_REFUSED = "credentials are given as env:VAR or file:PATH, never inline"
ENTRY_FIELDS = ("name", "kind", "url", "credentials", "options", "schedule", "enabled", "overrides")
SCHEDULE_FIELDS = ("incremental_interval_seconds", "full_cron")
OVERRIDE_FIELDS = ("page_size", "concurrency", "breaker", "budget")


class DeclarationError(ValueError):
    """The declarations cannot be used; lists every problem, each naming its source and field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid source declarations:\n  " + "\n  ".join(problems))
        self.problems = problems


class CredentialReferenceError(ValueError):
    """A credential reference that does not resolve; names the variable or file, never a value."""


def resolve_reference(ref: object, environ: Mapping[str, str], base_dir: Path) -> str:
    """The value behind ``env:VAR`` or ``file:PATH`` (relative to ``base_dir``)."""
    if not isinstance(ref, str) or not ref.startswith(("env:", "file:")):
        raise CredentialReferenceError(INLINE_REFUSED)
    scheme, _, target = ref.partition(":")
    if scheme == "env":
        value = environ.get(target)
        if value is None:
            msg = f"environment variable {target} is not set"
            raise CredentialReferenceError(msg)
    else:
        path = base_dir / Path(target).expanduser()
        try:
            value = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"file {path} cannot be read ({type(exc).__name__})"
            raise CredentialReferenceError(msg) from None
    if not value:
        msg = f"{ref} is empty"
        raise CredentialReferenceError(msg)
    return value


def _mapping(value: object, where: str, problems: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping")
        return {}
    return value


def _unknown(data: dict[str, Any], known: tuple[str, ...], where: str) -> list[str]:
    return [f"{where}.{k}: unknown field (known: {', '.join(known)})" for k in data if k not in known]


def _entry(
    entry: object,
    label: str,
    environ: Mapping[str, str],
    base_dir: Path,
    problems: list[str],
    allow_insecure_http: bool = False,
) -> SourceConfig | None:
    found: list[str] = []
    data = _mapping(entry, label, found)
    found += _unknown(data, ENTRY_FIELDS, label)
    schedule = _mapping(data.get("schedule"), f"{label}.schedule", found)
    overrides = _mapping(data.get("overrides"), f"{label}.overrides", found)
    found += _unknown(schedule, SCHEDULE_FIELDS, f"{label}.schedule")
    found += _unknown(overrides, OVERRIDE_FIELDS, f"{label}.overrides")
    credentials: dict[str, SecretStr] = {}
    for field, ref in _mapping(data.get("credentials"), f"{label}.credentials", found).items():
        try:
            credentials[str(field)] = SecretStr(resolve_reference(ref, environ, base_dir))
        except CredentialReferenceError as exc:
            found.append(f"{label}.credentials.{field}: {exc}")
    values = {k: v for k, v in data.items() if k in ("name", "kind", "url", "options", "enabled")}
    values |= {
        k: v for k, v in {**schedule, **overrides}.items() if k in (*SCHEDULE_FIELDS, *OVERRIDE_FIELDS)
    }
    source = None
    try:
        source = build({**values, "credentials": credentials})
    except InvalidSource as exc:
        found += [p.replace(f"source {data.get('name')!r}: ", f"{label}: ", 1) for p in exc.problems]
    if source is not None:
        found += [f"{label}: {p}" for p in source_problems(source, allow_insecure_http=allow_insecure_http)]
    problems += found
    return source if not found else None


def load_declarations(
    text: str, environ: Mapping[str, str], *, base_dir: Path, allow_insecure_http: bool = False
) -> list[SourceConfig]:
    """The sources declared in ``text``, credentials resolved.

    Raises:
        DeclarationError: every problem found, each naming its source and field.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the position: the problem's snippet may quote a line holding a pasted secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise DeclarationError([f"not valid YAML{where}"]) from None
    problems: list[str] = []
    top = _mapping(document, "the document", problems)
    problems += [f"{k}: unknown top-level field (expected: sources)" for k in top if k != "sources"]
    entries = top.get("sources") or []
    if not isinstance(entries, list):
        raise DeclarationError([*problems, "sources: must be a list"])
    sources = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"sources[{index}] ({name})" if name else f"sources[{index}]"
        source = _entry(entry, label, environ, base_dir, problems, allow_insecure_http)
        if source is not None:
            sources.append(source)
    names: list[str] = [e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
    problems += [
        f"source {n!r}: declared more than once" for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise DeclarationError(problems)
    return sources


def env_reference(source: str, field: str) -> str:
    """``env:SHOP_EU_CONSUMER_KEY`` for the ``consumer_key`` of ``shop-eu``."""
    return "env:" + re.sub(r"[^A-Z0-9]+", "_", f"{source}_{field}".upper())


def _declaration(source: SourceConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": source.name, "kind": source.kind, "url": source.url}
    entry["credentials"] = {f: env_reference(source.name, f) for f in sorted(source.credentials)}
    if source.options:
        entry["options"] = dict(source.options)
    schedule = {f: getattr(source, f) for f in SCHEDULE_FIELDS if getattr(source, f) is not None}
    if schedule:
        entry["schedule"] = schedule
    entry["enabled"] = source.enabled
    overrides = {f: getattr(source, f) for f in OVERRIDE_FIELDS if getattr(source, f)}
    if overrides:
        entry["overrides"] = {k: dict(v) if isinstance(v, dict) else v for k, v in overrides.items()}
    return entry


def dump_declarations(sources: list[SourceConfig]) -> str:
    """The YAML for ``sources``: references in place of credentials; environment-configured ones left out."""
    stored = [_declaration(s) for s in sources if not s.from_environment]
    return yaml.safe_dump({"sources": stored}, sort_keys=False, allow_unicode=True)
