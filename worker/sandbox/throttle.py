"""A host that throttles above a rate it does not announce: the edge (host, CDN, WAF) in front of the shops.

WooCommerce itself has no rate limit; the host in front of it does, and says nothing about it until a
client goes over. ``HostThrottle`` is that edge: one hidden token bucket (``rate`` requests per second,
``burst`` at once) shared by every request to the server, every tenant of a fleet included, since they
are one host. A request over the rate gets the edge's own 429 page at once (it never reaches the shop,
so it pays none of the shop's latency); ``retry_after_share`` of those carry ``Retry-After``. Refused
requests take no token, as nginx's ``limit_req`` does, so a client that keeps knocking is not punished
further, only refused.

Whatever the setting, every API request is counted and logged (a bounded log of arrival time, tenant,
path and the status sent), so a test or a bench can see what reached the host and when::

    throttle.set(rate=20, burst=4, retry_after_share=0.2, retry_after=1)
    throttle.counts.throttled, [a.status for a in throttle.arrivals()]
"""

from __future__ import annotations

import dataclasses
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.sandbox.faultplay import proxy_error_page
from worker.sandbox.faults import FaultSpecError
from worker.sandbox.wire import Request, Response, json_response

THROTTLE_PATH = "/__throttle__"
DEFAULT_LOG_SIZE = 10_000
TOO_MANY_REQUESTS = 429


@dataclass(frozen=True)
class ThrottleSpec:
    """The edge's hidden limit; ``rate=None`` lets everything through (the default)."""

    rate: float | None = None
    burst: int = 4
    retry_after_share: float = 0.0
    retry_after: int = 1
    seed: int = 0

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ThrottleSpec:
        """Build and validate a spec from keyword options or a decoded JSON body."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            msg = f"unknown throttle option(s): {', '.join(unknown)}"
            raise FaultSpecError(msg)
        try:
            spec = cls(**options)
            problems = spec._problems()
        except (TypeError, ValueError) as exc:
            msg = f"a throttle option has the wrong type ({exc})"
            raise FaultSpecError(msg) from None
        if problems:
            raise FaultSpecError("; ".join(problems))
        return spec

    def _problems(self) -> list[str]:
        checks = [
            ("rate must be > 0 (or null: no throttle)", self.rate is None or float(self.rate) > 0),
            ("burst must be an integer >= 1", type(self.burst) is int and self.burst >= 1),
            ("retry_after_share must be between 0 and 1", 0.0 <= float(self.retry_after_share) <= 1.0),
            (
                "retry_after must be whole seconds >= 0",
                isinstance(self.retry_after, int) and self.retry_after >= 0,
            ),
        ]
        return [message for message, ok in checks if not ok]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One API request as the host saw it; ``status`` None: no status line went out (hang, reset)."""

    at: float
    tenant: str
    path: str
    status: int | None


@dataclass(frozen=True)
class ThrottleCounts:
    """What reached the host: ``requests`` = ``admitted`` + ``throttled``."""

    requests: int = 0
    admitted: int = 0
    throttled: int = 0
    throttled_with_retry_after: int = 0

    @property
    def throttled_without_retry_after(self) -> int:
        return self.throttled - self.throttled_with_retry_after

    def as_dict(self) -> dict[str, int]:
        without = self.throttled_without_retry_after
        return {**dataclasses.asdict(self), "throttled_without_retry_after": without}


@dataclass(frozen=True)
class Admission:
    """The edge's verdict on one request; ``retry_after`` is set only on a throttled one that carries it."""

    at: float
    tenant: str
    path: str
    throttled: bool = False
    retry_after: int | None = None


class HostThrottle:
    """Thread-safe hidden token bucket plus counters and arrival log; ``set``/``clear`` act at once."""

    def __init__(
        self,
        spec: ThrottleSpec | None = None,
        *,
        log_size: int = DEFAULT_LOG_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._log: deque[Arrival] = deque(maxlen=log_size)
        self._requests = self._throttled = self._with_retry_after = 0
        self._install(spec or ThrottleSpec())

    @property
    def spec(self) -> ThrottleSpec:
        with self._lock:
            return self._spec

    def set(self, **options: Any) -> ThrottleSpec:
        """Replace the limit (everything not given returns to its default); the bucket starts full."""
        spec = ThrottleSpec.from_mapping(options)
        self._install(spec)
        return spec

    def clear(self) -> None:
        """No limit; counters and log are kept (``reset_counters`` empties them)."""
        self._install(ThrottleSpec())

    def _install(self, spec: ThrottleSpec) -> None:
        with self._lock:
            self._spec = spec
            self._rng = random.Random(spec.seed)
            self._tokens = float(spec.burst)
            self._refilled_at = self.clock()

    def admit(self, tenant: str, path: str) -> Admission:
        """Count one arriving request and decide whether the edge lets it through to the shop."""
        with self._lock:
            now = self.clock()
            spec = self._spec
            self._requests += 1
            if spec.rate is None or self._take(spec.rate, spec.burst, now):
                return Admission(now, tenant, path)
            self._throttled += 1
            if self._rng.random() >= spec.retry_after_share:
                return Admission(now, tenant, path, throttled=True)
            self._with_retry_after += 1
            return Admission(now, tenant, path, throttled=True, retry_after=spec.retry_after)

    def _take(self, rate: float, burst: int, now: float) -> bool:
        self._tokens = min(float(burst), self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        # The tolerance keeps float rounding (100.1 - 100.0 < 0.1) from refusing a request that is on time.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def done(self, admission: Admission, status: int | None) -> None:
        """Log the request once its answer went out (or did not: ``status`` None)."""
        with self._lock:
            self._log.append(Arrival(admission.at, admission.tenant, admission.path, status))

    @property
    def counts(self) -> ThrottleCounts:
        with self._lock:
            return self._counts_now()

    def _counts_now(self) -> ThrottleCounts:
        admitted = self._requests - self._throttled
        return ThrottleCounts(self._requests, admitted, self._throttled, self._with_retry_after)

    def arrivals(self) -> list[Arrival]:
        """The logged requests, oldest first by answer; the oldest fall off past ``log_size``."""
        with self._lock:
            return list(self._log)

    def reset_counters(self) -> None:
        with self._lock:
            self._requests = self._throttled = self._with_retry_after = 0
            self._log.clear()

    def snapshot(self, *, with_log: bool = False, reset: bool = False) -> dict[str, Any]:
        """The limit and counters (and the log, on request), as served by ``GET /__throttle__``.

        ``reset`` empties counters and log in the same step, so no request falls between two reads.
        """
        with self._lock:
            data: dict[str, Any] = {
                "throttle": dataclasses.asdict(self._spec),
                "counts": self._counts_now().as_dict(),
                "clock": self.clock(),
            }
            if with_log:
                data["arrivals"] = [[a.at, a.tenant, a.path, a.status] for a in self._log]
            if reset:
                self._requests = self._throttled = self._with_retry_after = 0
                self._log.clear()
        return data


def throttle_response(admission: Admission) -> Response:
    """The edge's own page: nginx's stock 429, not a WooCommerce JSON error (WordPress never saw it)."""
    headers = [] if admission.retry_after is None else [("Retry-After", str(admission.retry_after))]
    return Response(TOO_MANY_REQUESTS, proxy_error_page(TOO_MANY_REQUESTS), "text/html", headers)


def answer_throttle_control(throttle: HostThrottle, request: Request) -> Response:
    """``/__throttle__``: GET shows the limit and counters (``?log=1``: the arrivals too), POST sets the
    limit, DELETE lifts it; ``?reset=1`` on any of them empties counters and log afterwards."""
    if request.method == "POST":
        try:
            options = _json_object(request.body)
            throttle.set(**options)
        except (ValueError, FaultSpecError) as exc:
            return json_response(400, {"error": str(exc)})
    elif request.method == "DELETE":
        throttle.clear()
    elif request.method != "GET":
        return json_response(405, {"error": "use GET, POST or DELETE"})
    snapshot = throttle.snapshot(with_log=request.param("log") == "1", reset=request.param("reset") == "1")
    return json_response(200, snapshot)


def _json_object(body: bytes) -> dict[str, Any]:
    options = json.loads(body or b"{}")
    if not isinstance(options, dict):
        msg = "the body must be a JSON object"
        raise ValueError(msg)
    return options
