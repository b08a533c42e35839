"""Where events wait while the database is down: a Redis list, or a local file when Redis is down too.

Both spools hold JSON lines of ``PendingEvent``; ``EventLog`` decides which one to use and flushes them
in the order the events were recorded.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from worker.infra.settings import SettingsError

logger = logging.getLogger("worker.infra.eventlog")


@dataclass(frozen=True)
class PendingEvent:
    """An event ready to be stored: already redacted, truncated and JSON-safe."""

    event_uuid: str
    seq: int
    event_type: str
    aggregate_id: str | None
    correlation_id: str | None
    occurred_at: str
    payload: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def sort_key(self) -> tuple[datetime, int]:
        return datetime.fromisoformat(self.occurred_at), self.seq

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PendingEvent:
        return cls(**json.loads(text))

    def row(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "aggregate_id": self.aggregate_id,
            "correlation_id": self.correlation_id,
            "occurred_at": datetime.fromisoformat(self.occurred_at),
            "payload": self.payload,
            "metadata": {**self.metadata, "event_uuid": self.event_uuid},
        }


def unique_events(events: list[PendingEvent]) -> list[PendingEvent]:
    seen: set[str] = set()
    unique = []
    for e in events:
        if e.event_uuid not in seen:
            seen.add(e.event_uuid)
            unique.append(e)
    return unique


def parse_lines(lines: Iterable[str]) -> Iterator[PendingEvent]:
    for line in lines:
        try:
            yield PendingEvent.from_json(line)
        except (ValueError, TypeError):
            # A line torn by a crash mid-write cannot be repaired; dropping it keeps the rest flowing.
            logger.error("event log: dropping unreadable spooled event: %.200r", line)


# -- spools -------------------------------------------------------------------------------------

_TRIM = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[2], tonumber(ARGV[2]), -1)
redis.call('pexpire', KEYS[1], tonumber(ARGV[3]))
return 1
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
FLUSH_LOCK_MS = 60_000


class RedisSpool:
    """``<prefix>:events:pending``: a list only the holder of the flush lock trims, from the head."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:events:pending"
        self.lock_key = f"{prefix}:events:pending:flush-lock"
        self._trim = client.register_script(_TRIM)
        self._release = client.register_script(_RELEASE)

    def push(self, line: str) -> None:
        self.client.rpush(self.key, line)

    def pending(self) -> int:
        return int(self.client.llen(self.key))

    def lock(self) -> str | None:
        token = uuid.uuid4().hex
        return token if self.client.set(self.lock_key, token, nx=True, px=FLUSH_LOCK_MS) else None

    def read(self, count: int) -> list[str]:
        items = self.client.lrange(self.key, 0, count - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in items]

    def trim(self, token: str, count: int) -> bool:
        """Drop the ``count`` oldest items, only if we still hold the lock (and extend it)."""
        return bool(self._trim(keys=[self.lock_key, self.key], args=[token, count, FLUSH_LOCK_MS]))

    def release(self, token: str) -> None:
        self._release(keys=[self.lock_key], args=[token])


@dataclass
class FileClaim:
    events: list[PendingEvent]
    path: Path

    def done(self) -> None:
        self.path.unlink(missing_ok=True)


class FileSpool:
    """JSON lines appended with fsync under an exclusive ``flock``.

    A flush holds the same lock from reading to deleting the file, so no append can land in a file that
    is being flushed; a flush that dies after its commit leaves the file, and the uuids dedupe it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def has_pending(self) -> bool:
        return self.path.exists()

    def write_problem(self) -> str | None:
        """Why an event could not be spooled here, or None once the directory exists and takes files."""
        directory = self.path.parent
        if directory.exists() and not directory.is_dir():
            return self._problem(directory, "not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for existing in (self.path, self.lock_path):
                if existing.exists():  # left by another user, or a directory in the way
                    os.close(os.open(existing, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            return self._problem(exc.filename or directory, exc.strerror or str(exc))
        try:
            # Appending creates the spool and a flush deletes it: the directory must allow both.
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".spool-probe-"):
                pass
        except OSError as exc:
            return self._problem(directory, exc.strerror or str(exc))
        return None

    def _problem(self, where: object, reason: str) -> str:
        return f"cannot write events to {self.path}: {where}: {reason} (uid {os.geteuid()})"

    def pending(self) -> int:
        """Complete lines waiting in the file, for metrics; read without the lock, so it never blocks."""
        try:
            with self.path.open("rb") as spool:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: spool.read(1 << 16), b""))
        except FileNotFoundError:
            return 0

    def append(self, line: str) -> None:
        with self._locked(blocking=True):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextmanager
    def claim(self) -> Iterator[FileClaim | None]:
        """The spooled events, held under the lock until the caller is done with them."""
        if not self.has_pending():
            yield None
            return
        with self._locked(blocking=False) as locked:
            if not locked or not self.path.exists():
                yield None
                return
            lines = self.path.read_text(encoding="utf-8").splitlines()
            yield FileClaim(list(parse_lines(line for line in lines if line.strip())), self.path)

    @contextmanager
    def _locked(self, *, blocking: bool) -> Iterator[bool]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def check_spool_writable(spool_path: str) -> None:
    """Refuse to start a process whose last-resort spool could not take an event."""
    problem = FileSpool(Path(spool_path)).write_problem()
    if problem is not None:
        msg = (
            f"invalid configuration:\n  EVENT_SPOOL_PATH: {problem}; events recorded while the database "
            "and Redis are down would be lost. Point it at a file in a directory this user can write."
        )
        raise SettingsError(msg)
