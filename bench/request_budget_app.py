"""``celery -A request_budget_app worker``: syncworker's app, each process's requests held by a kombu bucket.

The "Celery rate_limit, same total" arm of ``bench/request_budget.py``. Celery's ``rate_limit`` is per
worker instance and limits task starts, not HTTP requests; this models the most a user gets from it
when it is applied to each request instead: every worker process holds its own ``kombu.utils.limits
.TokenBucket`` (capacity 1, as Celery's consumer builds it for a rate-limited task) at
``BENCH_PROCESS_RATE`` requests per second, and waits for a token before each upstream request, retries
included. Nothing is shared between processes, and a process with no run to do leaves its share unused.
Nothing in ``worker/`` changes: ``HttpTransport.request`` is wrapped here, before the app is built.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from kombu.utils.limits import TokenBucket

from worker.upstream.http import HttpResponse, HttpTransport

RATE = float(os.environ["BENCH_PROCESS_RATE"])
_send = HttpTransport.request


class _ProcessBucket:
    """One bucket per process; kombu's is not thread-safe and a run fetches pages on several threads."""

    def __init__(self) -> None:
        self.bucket = TokenBucket(RATE, capacity=1)
        self.lock = threading.Lock()

    def wait_for_token(self) -> None:
        while True:
            with self.lock:
                if self.bucket.can_consume(1):
                    return
                wait = self.bucket.expected_time(1)
            time.sleep(wait)


_process = _ProcessBucket()


def _renew_after_fork() -> None:
    # A prefork child gets a bucket (and an unheld lock) of its own, as a separate worker would.
    global _process
    _process = _ProcessBucket()


def _limited(self: HttpTransport, *args: Any, **kwargs: Any) -> HttpResponse:
    _process.wait_for_token()
    return _send(self, *args, **kwargs)


os.register_at_fork(after_in_child=_renew_after_fork)
HttpTransport.request = _limited  # type: ignore[method-assign]

from worker import app  # noqa: E402  -- built after the wrap, so every client it makes is limited

__all__ = ["app"]
