"""`syncworker run`: fail fast on bad settings; the commands it supervises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.cli.run import stack_commands


def test_bad_settings_exit_two_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WOOCOMMERCE_URL", "http://shop.internal.test")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2
    assert "WOOCOMMERCE_CONSUMER_KEY: is not set" in result.output
    assert "plain http" in result.output
    assert not (tmp_path / ".demo").exists()


def test_worker_consumes_both_queues_and_beat_runs_apart(settings_factory: Any) -> None:
    commands = stack_commands(settings_factory(log_level="WARNING"))
    assert set(commands) == {"worker", "beat"}
    worker = commands["worker"]
    assert worker[worker.index("-A") + 1] == "worker"
    assert worker[worker.index("-Q") + 1] == "odoo,woocommerce"
    assert worker[worker.index("-l") + 1] == "warning"
    assert "-B" not in worker  # an embedded beat would double-fire with a second replica
    assert commands["beat"][-3:] == ["beat", "-l", "warning"]


def test_every_subcommand_is_mounted() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("run", "health", "runs", "events", "db", "breakers", "sync"):
        assert f"  {name} " in result.output
