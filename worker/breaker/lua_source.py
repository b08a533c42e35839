"""Lua script text with its ``--#include <chunk>`` lines replaced by the chunks (Redis has no includes).

Chunks are looked up by name in an ordered list of directories, so a script may include chunks
that another package keeps next to its own code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.resources.abc import Traversable

INCLUDE = re.compile(r"^--#include (\w+)[ \t]*$", re.MULTILINE)


def load_script(name: str, search: Sequence[Traversable]) -> str:
    """``<name>.lua`` with each include pasted in place; a chunk may be included once and includes none."""
    included: set[str] = set()

    def paste(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if chunk in included:
            raise ValueError(f"{name}.lua includes {chunk} twice")
        included.add(chunk)
        text = _read(chunk, search)
        if INCLUDE.search(text):
            raise ValueError(f"{chunk}.lua is included, so it cannot include other chunks")
        return text

    return INCLUDE.sub(paste, _read(name, search))


def _read(name: str, search: Sequence[Traversable]) -> str:
    for directory in search:
        path = directory / f"{name}.lua"
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"{name}.lua is in none of {[str(d) for d in search]}")
