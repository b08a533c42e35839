"""The ``sources`` table as a repository of ``SourceConfig``; credentials sealed in, opened out.

Every function works inside the caller's session and transaction, so a command that changes several
sources (``apply``) commits them together or not at all, and a dry run is a rollback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import ReconcileSeenId, Source, SyncState
from worker.sources.checks import source_problems
from worker.sources.config import SourceConfig
from worker.sources.secrets import CredentialCipher

ROTATE_BATCH = 200
# Fields a change may not touch: the name keys the source's rows, runs and breaker, and the kind decides
# which table its rows are in and what its bookmarks mean (remove the source and add it anew instead).
FIXED_FIELDS = frozenset({"name", "kind", "from_environment"})
STORED_FIELDS = (
    "kind",
    "url",
    "options",
    "enabled",
    "incremental_interval_seconds",
    "full_cron",
    "page_size",
    "concurrency",
    "breaker",
    "budget",
)


class SourceStoreError(ValueError):
    """A change to the configured sources was refused; the message says why, never a credential."""


class SourceExists(SourceStoreError):
    pass


class SourceNotFound(SourceStoreError):
    pass


class InvalidSource(SourceStoreError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid source configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass
class ApplyReport:
    """The names ``apply`` created, updated, left as they were and removed."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
        }


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def validate(sources: list[SourceConfig], *, allow_insecure_http: bool = False) -> None:
    """Raise ``InvalidSource`` listing every problem of every source, each prefixed with its name."""
    problems = [f"source {s.name!r}: {p}" for s in sources
                for p in source_problems(s, allow_insecure_http=allow_insecure_http)]  # fmt: skip
    problems += [f"source {s.name!r}: configured from the environment, not stored" for s in sources
                 if s.from_environment]  # fmt: skip
    if problems:
        raise InvalidSource(problems)


def build(values: dict[str, Any]) -> SourceConfig:
    """A ``SourceConfig`` from field values, refused as ``InvalidSource`` naming each bad field."""
    try:
        return SourceConfig.model_validate(values)
    except ValidationError as exc:
        # Field and message only: pydantic's input echo could carry a credential.
        name = values.get("name")
        raise InvalidSource([f"source {name!r}: {field_errors(exc)}"]) from None


def field_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'source'}: {e['msg']}" for e in exc.errors())


def _row(session: Session, name: str) -> Source | None:
    return session.scalars(select(Source).where(Source.name == name)).one_or_none()


def _existing(session: Session, name: str) -> Source:
    row = _row(session, name)
    if row is None:
        msg = f"no configured source named {name!r}"
        raise SourceNotFound(msg)
    return row


def _to_config(row: Source, cipher: CredentialCipher) -> SourceConfig:
    values: dict[str, Any] = {f: getattr(row, f) for f in STORED_FIELDS}
    credentials = cipher.open(row.credentials, source=row.name)
    return SourceConfig(name=row.name, credentials=credentials, **values)


def _write(row: Source, source: SourceConfig, cipher: CredentialCipher, now: dt.datetime) -> None:
    for name in STORED_FIELDS:
        setattr(row, name, getattr(source, name))
    row.credentials = cipher.seal({f: v.get_secret_value() for f, v in source.credentials.items()})
    row.updated_at = now


def _same(a: SourceConfig, b: SourceConfig) -> bool:
    # Compared decrypted: a token is new at every seal, so comparing tokens would see a change every time.
    def plain(s: SourceConfig) -> dict[str, Any]:
        credentials = {f: v.get_secret_value() for f, v in s.credentials.items()}
        return {**s.model_dump(exclude={"credentials"}), "credentials": credentials}

    return plain(a) == plain(b)


def add(
    session: Session,
    source: SourceConfig,
    cipher: CredentialCipher,
    *,
    now: Callable[[], dt.datetime] = utcnow,
    allow_insecure_http: bool = False,
) -> None:
    """Store a new source; its name must be free and the source valid for its kind."""
    taken = f"a source named {source.name!r} already exists (use edit to change it)"
    if _row(session, source.name) is not None:
        raise SourceExists(taken)
    validate([source], allow_insecure_http=allow_insecure_http)
    stamp = now()
    row = Source(name=source.name, created_at=stamp)
    _write(row, source, cipher, stamp)
    try:
        # In a savepoint: another `add` of the same name may commit between the check and this insert.
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise SourceExists(taken) from None


def get(session: Session, name: str, cipher: CredentialCipher) -> SourceConfig | None:
    row = _row(session, name)
    return _to_config(row, cipher) if row is not None else None


def list_all(session: Session, cipher: CredentialCipher) -> list[SourceConfig]:
    """Every stored source, by name."""
    return [_to_config(r, cipher) for r in session.scalars(select(Source).order_by(Source.name))]


def update(
    session: Session,
    name: str,
    changes: dict[str, Any],
    cipher: CredentialCipher,
    *,
    now: Callable[[], dt.datetime] = utcnow,
    allow_insecure_http: bool = False,
) -> SourceConfig:
    """Change the given fields of a source; ``credentials`` replaces only the fields it names.

    Returns the source as it now is; ``updated_at`` moves only when something really changed.
    """
    fixed = sorted(FIXED_FIELDS & changes.keys())
    if fixed:
        msg = f"{', '.join(fixed)} of a source cannot be changed; remove it and add a new one"
        raise SourceStoreError(msg)
    row = _existing(session, name)
    current = _to_config(row, cipher)
    merged = {**current.model_dump(), **changes}
    merged["credentials"] = {**current.credentials, **changes.get("credentials", {})}
    changed = build(merged)
    if not _same(current, changed):
        validate([changed], allow_insecure_http=allow_insecure_http)
        _write(row, changed, cipher, now())
        session.flush()
    return changed


def set_enabled(
    session: Session, name: str, enabled: bool, *, now: Callable[[], dt.datetime] = utcnow
) -> bool:
    """Enable or disable a source; True when that changed something."""
    row = _existing(session, name)
    if row.enabled == enabled:
        return False
    row.enabled = enabled
    row.updated_at = now()
    session.flush()
    return True


def remove(session: Session, name: str) -> None:
    """Forget a source. Its mirrored rows, runs and events stay: they are history, not configuration.

    Its bookmarks go: a source added later under the same name (another shop, perhaps) must start from
    the beginning, not from this one's watermark and checkpoints.
    """
    session.delete(_existing(session, name))
    session.execute(sa.delete(SyncState).where(SyncState.source == name))
    session.execute(sa.delete(ReconcileSeenId).where(ReconcileSeenId.source == name))
    session.flush()


def rotate_all(session: Session, cipher: CredentialCipher, *, batch_size: int = ROTATE_BATCH) -> int:
    """Re-encrypt every source's credentials with the newest key; returns how many.

    One transaction: a row no key opens stops the rotation with every row as it was.
    """
    count, last_id = 0, 0
    while True:
        batch = session.execute(
            select(Source.id, Source.name, Source.credentials)
            .where(Source.id > last_id)
            .order_by(Source.id)
            .limit(batch_size)
        ).all()
        if not batch:
            return count
        rows = [{"id": i, "credentials": cipher.rotate(token, source=n)} for i, n, token in batch]
        session.execute(sa.update(Source), rows)
        count += len(rows)
        last_id = batch[-1].id


def apply(
    session: Session,
    declared: list[SourceConfig],
    cipher: CredentialCipher,
    *,
    prune: bool,
    now: Callable[[], dt.datetime] = utcnow,
    allow_insecure_http: bool = False,
) -> ApplyReport:
    """Make the table hold ``declared``: create the missing, update the changed, keep the equal.

    With ``prune``, sources not declared are removed. Applying the same declarations twice changes nothing.
    """
    names = [s.name for s in declared]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidSource([f"source {n!r}: declared more than once" for n in duplicates])
    validate(declared, allow_insecure_http=allow_insecure_http)
    report = ApplyReport()
    stored = {r.name: r for r in session.scalars(select(Source).order_by(Source.name))}
    stamp = now()
    for source in sorted(declared, key=lambda s: s.name):
        row = stored.get(source.name)
        if row is None:
            row = Source(name=source.name, created_at=stamp)
            _write(row, source, cipher, stamp)
            session.add(row)
            report.created.append(source.name)
        elif row.kind != source.kind:
            raise InvalidSource([f"source {source.name!r}: is a {row.kind} source; its kind cannot change "
                                 "(remove it and add it anew)"])  # fmt: skip
        elif _same(_to_config(row, cipher), source):
            report.unchanged.append(source.name)
        else:
            _write(row, source, cipher, stamp)
            report.updated.append(source.name)
    if prune:
        for name in sorted(stored.keys() - set(names)):
            session.delete(stored[name])
            report.removed.append(name)
    session.flush()
    return report
