"""Scripts assembled from chunks: ``--#include <name>`` lines, looked up in several directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.breaker.lua_source import INCLUDE, load_script
from worker.breaker.protocol import SOURCES


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.lua").write_text(text)


def test_each_include_is_pasted_from_the_first_directory_that_has_it(tmp_path: Path) -> None:
    own, other = tmp_path / "own", tmp_path / "other"
    write(own, "main", "--#include common\n--#include budget\nreturn 1\n")
    write(own, "common", "local a = 1\n")
    write(other, "common", "local shadowed = true\n")
    write(other, "budget", "local b = 2\n")
    assert load_script("main", [own, other]) == "local a = 1\n\nlocal b = 2\n\nreturn 1\n"


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ({"main": "--#include common\n--#include common\n", "common": ""}, "includes common twice"),
        ({"main": "--#include common\n", "common": "--#include other\n", "other": ""}, "cannot include"),
        ({"main": "--#include missing\n"}, "missing.lua is in none of"),
    ],
    ids=["twice", "nested", "missing"],
)
def test_what_an_include_may_not_do(tmp_path: Path, chunks: dict[str, str], error: str) -> None:
    for name, text in chunks.items():
        write(tmp_path, name, text)
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        load_script("main", [tmp_path])


def test_the_breaker_scripts_hold_no_include_line() -> None:
    assert all(INCLUDE.search(source) is None for source in SOURCES.values())
    assert all("local function reply(" in source for source in SOURCES.values())
