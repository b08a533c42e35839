"""Child processes started and stopped the way Celery needs: signals go to each child's main pid only.

Every child gets its own session, so a Ctrl-C in the terminal reaches this supervisor alone; the
supervisor then signals each child's main process, which shuts its own pool down warm. Signalling a
whole process group instead would kill the prefork pool's running tasks at once. Children also get
a parent-death signal, so a supervisor killed with SIGKILL does not leave them running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.2


def _die_with_parent() -> None:
    # Runs in the child between fork and exec (Linux only; elsewhere a no-op).
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


class Supervisor:
    """Starts children, forwards signals to their main pids, and stops them all (warm, then hard)."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.children: list[Child] = []
        self._sleep = sleep

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> Child:
        """Start ``argv``; its output goes to ``log_path`` (or this process's output when None)."""
        out: IO[bytes] | None = log_path.open("ab") if log_path is not None else None
        try:
            process = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not None:
                out.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to each running child's main pid (never to its process group)."""
        for child in self.children:
            if child.running():
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    continue

    def first_exit(self) -> Child | None:
        """A child that has exited, if any."""
        return next((c for c in self.children if not c.running()), None)

    def wait_all(self, timeout: float) -> bool:
        """Wait for every child to exit; False if some still run after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while any(c.running() for c in self.children):
            if time.monotonic() >= deadline:
                return False
            self._sleep(POLL_SECONDS)
        return True

    def stop(self, child: Child, timeout: float) -> None:
        """SIGTERM (warm) to the main pid, then SIGKILL to its group as a last resort."""
        if not child.running():
            return
        os.kill(child.pid, signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(child)

    def stop_all(self, timeout: float) -> None:
        """Stop children newest first, so the workers go before the services they depend on."""
        for child in reversed(self.children):
            self.stop(child, timeout)

    def _kill_group(self, child: Child) -> None:
        # Only after the warm window: the child ignored SIGTERM, so nothing running is worth saving.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.process.wait()

    def write_pidfile(self, path: Path) -> None:
        """``name pid`` per line; the pids an operator or a test may check after a stop."""
        lines = [f"{c.name} {c.pid}" for c in self.children]
        path.write_text("\n".join(lines) + "\n")

    def exit_code(self) -> int:
        """The first non-zero exit status among the children, else 0."""
        codes = [c.process.returncode for c in self.children if c.process.returncode]
        return codes[0] if codes else 0
