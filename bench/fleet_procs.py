"""The processes a fleet bench starts: tracked so every one of them is ended, and read from /proc.

Every child is started in a process group of its own, so ending it also ends its prefork children;
``Processes.close`` ends them all, newest first, whatever happened before (also on Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    return text.rpartition(")")[2].split()


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += children_of(current)
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree: live processes, plus the reaped children each one waited for."""
    total = 0
    for member in tree(pid):
        fields = _stat(member)
        if fields is not None:
            # utime, stime, cutime, cstime (fields 14-17 of stat; 0-based 11-14 after the name)
            total += sum(int(v) for v in fields[11:15])
    return total / TICK


def rss_mb(pid: int) -> float | None:
    fields = _stat(pid)
    return None if fields is None else int(fields[21]) * PAGE / 2**20


@dataclass
class Started:
    role: str
    proc: subprocess.Popen[Any]
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Processes:
    """Every process the bench started, by role; ``close`` ends them all."""

    logs: Path
    started: list[Started] = field(default_factory=list)

    def start(
        self,
        role: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stdout_pipe: bool = False,
    ) -> Started:
        log = self.logs / f"{role}.log"
        out: int | IO[bytes] = subprocess.PIPE if stdout_pipe else log.open("wb")
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=log.open("ab") if stdout_pipe else subprocess.STDOUT,
            text=stdout_pipe or None,
            start_new_session=True,
        )
        started = Started(role, proc, log)
        self.started.append(started)
        return started

    def by_role(self, prefix: str) -> list[Started]:
        return [s for s in self.started if s.role.startswith(prefix)]

    def cpu(self, prefix: str) -> float:
        return sum(tree_cpu_seconds(s.pid) for s in self.by_role(prefix) if s.proc.poll() is None)

    def check_alive(self) -> None:
        dead = [
            f"{s.role} (exit {s.proc.returncode}, log {s.log})"
            for s in self.started
            if s.proc.poll() is not None
        ]
        if dead:
            msg = "bench processes exited early: " + ", ".join(dead)
            raise RuntimeError(msg)

    def stop(self, started: Started, timeout: float = 60.0) -> None:
        if started.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.pid, signal.SIGTERM)
            try:
                started.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started.pid, signal.SIGKILL)
                started.proc.wait(timeout=10)
        # A prefork child the group signal missed (it left the group) is ended by its own pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.pid, signal.SIGKILL)

    def close(self) -> None:
        for started in reversed(self.started):
            with contextlib.suppress(Exception):
                self.stop(started)
        self.started.clear()


def wait_until(predicate: Any, timeout: float, step: float = 1.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f} s waiting for {what}"
            raise TimeoutError(msg)
        time.sleep(step)
