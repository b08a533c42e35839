"""`syncworker db upgrade|downgrade|current` on a real database file."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from worker.cli import main
from worker.cli.output import CliState


def test_upgrade_current_and_downgrade(settings_factory: Any, tmp_path: Any) -> None:
    settings = settings_factory(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["db", *args], obj=CliState(settings=settings))

    behind = run("current", "--json")
    assert behind.exit_code == 1
    assert json.loads(behind.stdout)["current"] is None

    upgraded = run("upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "schema at revision 0005" in upgraded.stdout
    current = run("current", "--json")
    assert current.exit_code == 0
    assert json.loads(current.stdout) | {"database": "-"} == {
        "database": "-",
        "current": "0005",
        "head": "0005",
        "up_to_date": True,
    }

    downgraded = run("downgrade", "base")
    assert downgraded.exit_code == 0, downgraded.output
    assert "schema at revision base" in downgraded.stdout
    assert run("current").exit_code == 1
