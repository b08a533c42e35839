"""Successes in CLOSED, counted in this process until its next round trip (see breaker.py)."""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable

from worker.breaker.state import NO_PENDING, Admission, PendingSuccesses


class SuccessBuffer:
    """Successes in CLOSED counted locally until this process's next round trip.

    Plain fields rather than a frozen dataclass: this runs on every healthy call.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._reset()
        # A forked child (Celery prefork) must not report its parent's successes a second time,
        # nor inherit a lock some other thread held at the fork.
        os.register_at_fork(after_in_child=functools.partial(_reset_in_child, weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._count = self._max_seq = self._stale = 0
        self._since = 0.0

    def add(self, admission: Admission) -> None:
        with self._lock:
            if admission.generation < self._generation:
                self._stale += 1
            elif admission.generation > self._generation:
                self._stale += self._count
                self._generation, self._count = admission.generation, 1
                self._max_seq = admission.failure_seq
            else:
                self._count += 1
                self._max_seq = max(self._max_seq, admission.failure_seq)
            self._since = self._clock()

    def take(self) -> PendingSuccesses:
        """Hand the buffer to a script call; the age lets Redis date the last success itself."""
        with self._lock:
            if self._count + self._stale == 0:
                return NO_PENDING
            pending = PendingSuccesses(
                self._generation,
                self._count,
                self._max_seq,
                max(0.0, self._clock() - self._since),
                self._stale,
            )
            self._count = self._max_seq = self._stale = 0
            return pending


def _reset_in_child(ref: weakref.ref[SuccessBuffer]) -> None:
    buffer = ref()
    if buffer is not None:
        buffer._reset()
