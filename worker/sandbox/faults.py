"""Fault injection shared by the simulators, changeable while they run.

One ``FaultInjector`` may serve several simulators: a test flips a single switch and every upstream
misbehaves the same way. Selection (paths, rate, every, count) is decided here; what each fault looks
like on the wire is decided by ``worker.sandbox.faultplay`` and by each simulator's flavour.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("status", "hang", "html200", "php_notice", "truncated", "oversized", "auth", "down")
DEFAULT_OVERSIZED_BYTES = 64 * 1024 * 1024


class FaultSpecError(ValueError):
    """A fault description that cannot be applied; the message names the offending option."""


@dataclass(frozen=True)
class FaultSpec:
    """What to inject and where. ``kind=None`` with ``latency_ms`` only slows requests down."""

    kind: str | None = None
    latency_ms: float = 0.0
    status: int = 503
    retry_after: float | str | None = None
    auth_status: int = 401
    hang_seconds: float = 30.0
    oversized_bytes: int = DEFAULT_OVERSIZED_BYTES
    # False streams the body chunked, so a client must count bytes itself to abort early.
    oversized_content_length: bool = False
    # True declares the full Content-Length and closes mid-body; False declares the cut length.
    truncated_full_length: bool = True
    rate: float = 1.0
    every: int | None = None
    count: int | None = None
    paths: tuple[str, ...] = ()
    seed: int = 0
    down_seconds: float | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> FaultSpec:
        """Build and validate a spec from keyword options or a decoded JSON body."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            msg = f"unknown fault option(s): {', '.join(unknown)}"
            raise FaultSpecError(msg)
        values = dict(options)
        if isinstance(values.get("paths"), str):
            values["paths"] = (values["paths"],)
        if "paths" in values:
            values["paths"] = tuple(str(p) for p in values["paths"] or ())
        try:
            spec = cls(**values)
        except TypeError as exc:
            raise FaultSpecError(str(exc)) from None
        spec.validate()
        return spec

    def validate(self) -> None:
        try:
            problems = [p for p in self._problems() if p]
        except (TypeError, ValueError) as exc:
            msg = f"a fault option has the wrong type ({exc})"
            raise FaultSpecError(msg) from None
        if problems:
            raise FaultSpecError("; ".join(problems))

    def _problems(self) -> list[str]:
        return [
            f"kind must be one of {', '.join(KINDS)}" if self.kind not in (None, *KINDS) else "",
            "status must be an HTTP error status (400-599)"
            if not isinstance(self.status, int) or not 400 <= self.status <= 599
            else "",
            "auth_status must be 401 or 403" if self.auth_status not in (401, 403) else "",
            "rate must be between 0 and 1" if not 0.0 <= float(self.rate) <= 1.0 else "",
            "every must be >= 1" if self.every is not None and self.every < 1 else "",
            "count must be >= 1" if self.count is not None and self.count < 1 else "",
            "latency_ms must be >= 0" if self.latency_ms < 0 else "",
            "hang_seconds must be >= 0" if self.hang_seconds < 0 else "",
            "oversized_bytes must be >= 1" if self.oversized_bytes < 1 else "",
        ]

    def matches(self, path: str) -> bool:
        """A prefix, or a sub-path anywhere: ``/variations`` matches ``/products/7/variations``."""
        if not self.paths:
            return True
        return any(path.startswith(p) or (p.rstrip("/") + "/") in (path + "/") for p in self.paths)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["paths"] = list(self.paths)
        return data


@dataclass(frozen=True)
class Decision:
    """What the server must do for one request: wait ``latency_s``, then apply ``fault`` if set."""

    latency_s: float = 0.0
    fault: FaultSpec | None = None


@dataclass
class FaultStats:
    """Observations a test asserts on: what reached the upstream and what was injected."""

    requests: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    oversized_bytes_sent: int = 0
    oversized_completed: bool = False


Listener = Callable[[FaultSpec], None]


class FaultInjector:
    """Thread-safe fault switchboard; ``set``/``clear`` take effect on the next request."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._spec = FaultSpec(seed=seed)
        self._rng = random.Random(seed)
        self._matched = 0
        self._remaining: int | None = None
        self._listeners: list[Listener] = []
        self._timer: threading.Timer | None = None
        self._stats = FaultStats()

    @property
    def spec(self) -> FaultSpec:
        with self._lock:
            return self._spec

    def set(self, **options: Any) -> FaultSpec:
        """Replace the current fault (everything not given returns to its default)."""
        spec = FaultSpec.from_mapping(options)
        self._install(spec)
        return spec

    def clear(self) -> None:
        """No latency, no fault; a server that is down listens again on the same port."""
        self._install(FaultSpec())

    def _install(self, spec: FaultSpec) -> None:
        with self._lock:
            self._spec = spec
            self._rng = random.Random(spec.seed)
            self._matched = 0
            self._remaining = spec.count
            listeners = list(self._listeners)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if spec.kind == "down" and spec.down_seconds is not None:
                # Over HTTP nobody could clear "down" (the port is closed), so it can expire by itself.
                self._timer = threading.Timer(spec.down_seconds, self._expire_down, args=(spec,))
                self._timer.daemon = True
                self._timer.start()
        for listener in listeners:
            listener(spec)

    def _expire_down(self, spec: FaultSpec) -> None:
        with self._lock:
            current = self._spec is spec
        if current:
            self.clear()

    def subscribe(self, listener: Listener) -> None:
        """Servers subscribe to learn about "down" as soon as it is set."""
        with self._lock:
            self._listeners.append(listener)
        listener(self.spec)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def decide(self, path: str) -> Decision:
        """Count the request and choose its fate; ``count``-limited faults clear themselves."""
        with self._lock:
            self._stats.requests[path] += 1
            spec = self._spec
            if not spec.matches(path):
                return Decision()
            latency = spec.latency_ms / 1000.0
            if spec.kind in (None, "down") or not self._selected(spec):
                return Decision(latency_s=latency)
            self._stats.injected[spec.kind] += 1
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._spec = dataclasses.replace(spec, kind=None, count=None)
            return Decision(latency_s=latency, fault=spec)

    def _selected(self, spec: FaultSpec) -> bool:
        self._matched += 1
        if spec.every is not None:
            return self._matched % spec.every == 0
        return spec.rate >= 1.0 or self._rng.random() < spec.rate

    def record_oversized(self, sent: int, *, completed: bool) -> None:
        with self._lock:
            self._stats.oversized_bytes_sent = sent
            self._stats.oversized_completed = completed

    @property
    def oversized_bytes_sent(self) -> int:
        """Bytes of the last oversized body that were written before the client hung up."""
        with self._lock:
            return self._stats.oversized_bytes_sent

    @property
    def oversized_completed(self) -> bool:
        with self._lock:
            return self._stats.oversized_completed

    def requests(self, path_prefix: str = "") -> int:
        """How many requests (faulted or not, control endpoint excluded) reached paths with this prefix."""
        with self._lock:
            return sum(n for p, n in self._stats.requests.items() if p.startswith(path_prefix))

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats.requests)

    @property
    def injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats.injected)

    def reset_counters(self) -> None:
        with self._lock:
            self._stats = FaultStats()

    def snapshot(self) -> dict[str, Any]:
        """The current fault and counters, as served by ``GET /__faults__``."""
        with self._lock:
            return {
                "fault": self._spec.as_dict(),
                "remaining": self._remaining,
                "requests": dict(self._stats.requests),
                "injected": dict(self._stats.injected),
                "oversized_bytes_sent": self._stats.oversized_bytes_sent,
                "oversized_completed": self._stats.oversized_completed,
            }
