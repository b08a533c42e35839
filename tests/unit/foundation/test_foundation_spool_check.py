"""The start-up check of the last-resort event spool: what it accepts, creates, leaves behind and reports.

Permission problems need an unprivileged user: tests/integration/ops/test_ops_image_spool.py has them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.infra.eventspool import FileSpool, check_spool_writable
from worker.infra.settings import SettingsError


def test_a_missing_directory_is_created_and_nothing_else_is_left(tmp_path: Path) -> None:
    spool = tmp_path / "var" / "spool" / "events.spool"
    assert FileSpool(spool).write_problem() is None
    check_spool_writable(str(spool))
    assert spool.parent.is_dir()
    assert list(spool.parent.iterdir()) == []  # no probe, no lock, no empty spool that looks pending


def test_a_relative_default_is_checked_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert FileSpool(Path("syncworker-events.spool")).write_problem() is None


def test_an_existing_spool_and_lock_must_be_writable_files(tmp_path: Path) -> None:
    spool = tmp_path / "events.spool"
    spool.mkdir()
    problem = FileSpool(spool).write_problem()
    assert problem is not None
    assert "Is a directory" in problem


def test_a_file_in_place_of_the_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("")
    with pytest.raises(SettingsError) as info:
        check_spool_writable(str(tmp_path / "spool" / "events.spool"))
    message = str(info.value)
    assert message.startswith("invalid configuration:\n  EVENT_SPOOL_PATH: cannot write events to")
    assert f"{tmp_path / 'spool'}: not a directory" in message


def test_a_file_further_up_is_named_too(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("")
    problem = FileSpool(tmp_path / "var" / "lib" / "events.spool").write_problem()
    assert problem is not None
    assert str(tmp_path / "var") in problem
