"""Helpers for the operations tests: a clean environment for subprocesses, free ports, process checks."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from worker.infra.settings import Settings

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any syncworker, Flower or Prometheus setting, plus ``values``."""
    fields = {name.upper() for name in Settings.model_fields}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in fields
        and k.split("__")[0].upper() not in fields
        and not k.startswith(("FLOWER_", "PROMETHEUS_", "CELERY_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(values)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_pids() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def direct_children(pid: int) -> list[int]:
    return [p for p, parent in parent_pids().items() if parent == pid and alive(p)]


def children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid``, found by scanning /proc."""
    parents = parent_pids()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return [p for p in found if alive(p)]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.2)
