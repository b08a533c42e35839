"""The Dockerfile, read as data: no Docker engine is needed to check what the image is meant to do."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ops_env import REPO


@dataclass(frozen=True)
class CreatedDir:
    """A directory a RUN line makes with ``install -d -o OWNER -g GROUP -m MODE PATH``."""

    path: PurePosixPath
    owner: str
    mode: int


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def env() -> dict[str, str]:
    """Every ``ENV KEY=VALUE ...`` of the image (values without spaces or quotes, as ours are)."""
    values: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "ENV":
            values |= dict(pair.split("=", 1) for pair in rest.split())
    return values


def cmd() -> list[str]:
    commands = [rest for keyword, rest in instructions() if keyword == "CMD"]
    parsed = json.loads(commands[-1])  # exec form, or this raises
    assert isinstance(parsed, list)
    return [str(arg) for arg in parsed]


def runtime_user() -> str:
    return [rest for keyword, rest in instructions() if keyword == "USER"][-1]


def runtime_uid() -> int:
    """The uid ``useradd --uid N <user>`` gives the runtime user."""
    user = runtime_user()
    for keyword, rest in instructions():
        match = re.search(rf"useradd\b[^&;]*--uid (\d+)[^&;]* {re.escape(user)}\b", rest)
        if keyword == "RUN" and match:
            return int(match.group(1))
    raise AssertionError(f"no useradd --uid for {user}")


def created_dirs() -> list[CreatedDir]:
    dirs = []
    for keyword, rest in instructions():
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if words[:2] == ["install", "-d"]:
                options = dict(zip(words[2:-1:2], words[3:-1:2], strict=True))
                dirs.append(CreatedDir(PurePosixPath(words[-1]), options["-o"], int(options["-m"], 8)))
    return dirs
