"""`syncworker run`: fail fast on bad settings, never mistake a broken deploy for the demo; its commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import worker.cli.run as run_module
import worker.demo
from worker.cli import main
from worker.cli.run import UPSTREAM_VARIABLES, stack_commands
from worker.demo.stack import is_operator_setting
from worker.infra.settings import load_settings

EVERY_UPSTREAM_VARIABLE = [name for names in UPSTREAM_VARIABLES.values() for name in names]


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Path, bool]]:
    """Nothing configured: no setting in the environment, no .env; records run_demo calls."""
    for name in [k for k in os.environ if is_operator_setting(k)]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[Path, bool]] = []

    def fake_demo(*, workdir: Path, once: bool) -> int:
        calls.append((workdir, once))
        return 0

    monkeypatch.setattr(worker.demo, "run_demo", fake_demo)
    return calls


def test_bad_settings_exit_two_before_anything_starts(
    bare: list[tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WOOCOMMERCE_URL", "http://shop.internal.test")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2
    assert "WOOCOMMERCE_CONSUMER_KEY: is not set" in result.output
    assert "plain http" in result.output
    assert bare == []
    assert not (tmp_path / ".demo").exists()


def test_nothing_configured_plays_the_demo_and_says_so(bare: list[tuple[Path, bool]]) -> None:
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    assert "this is the DEMO" in result.output
    assert bare == [(Path(".demo"), False)]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgresql://syncworker@db.internal:5432/syncworker"),
        ("REDIS_URL", "redis://redis.internal:6379/0"),
        ("CELERY_BROKER_URL", "redis://redis.internal:6379/1"),
        ("database_url", "sqlite:///syncworker.db"),  # names are case-insensitive, the default value too
    ],
)
def test_a_configured_server_without_upstream_refuses(
    bare: list[tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2, result.output
    assert f"{variable.upper()} is set" in result.output
    for name in EVERY_UPSTREAM_VARIABLE:
        assert name in result.output
    assert "syncworker demo" in result.output
    assert bare == []


def test_a_server_in_the_env_file_counts_too(bare: list[tuple[Path, bool]], tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REDIS_URL=redis://redis.internal:6379/0\n")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2, result.output
    assert "REDIS_URL is set" in result.output
    assert bare == []


def test_demo_fallback_off_refuses_even_with_nothing_configured(
    bare: list[tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_FALLBACK", "false")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2, result.output
    assert "DEMO_FALLBACK is false" in result.output
    assert bare == []


@pytest.mark.parametrize("upstream", sorted(UPSTREAM_VARIABLES))
def test_the_named_variables_are_exactly_what_enables_an_upstream(upstream: str) -> None:
    values = {name.lower(): "https://upstream.internal.test" for name in UPSTREAM_VARIABLES[upstream]}
    values |= {name: "a-long-enough-secret" for name in values if not name.endswith("_url")}
    settings = load_settings(_env_file=None, **values)
    assert settings.odoo_enabled == (upstream == "Odoo")
    assert settings.woocommerce_enabled == (upstream == "WooCommerce")


@pytest.fixture
def woocommerce(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """WooCommerce configured; records the spool path of each stack started instead of starting it."""
    monkeypatch.setenv("WOOCOMMERCE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WOOCOMMERCE_CONSUMER_KEY", "ck_0123456789")
    monkeypatch.setenv("WOOCOMMERCE_CONSUMER_SECRET", "cs_0123456789")
    started: list[str] = []

    def fake_stack(settings: Any) -> int:
        started.append(settings.event_spool_path)
        return 0

    monkeypatch.setattr(run_module, "run_stack", fake_stack)
    return started


def test_an_upstream_runs_the_stack_once_the_spool_is_writable(
    bare: list[tuple[Path, bool]], woocommerce: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EVENT_SPOOL_PATH", str(tmp_path / "spool" / "events.spool"))
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    assert woocommerce == [str(tmp_path / "spool" / "events.spool")]
    assert (tmp_path / "spool").is_dir()
    assert bare == []


def test_an_unwritable_event_spool_stops_run_before_it_migrates(
    bare: list[tuple[Path, bool]], woocommerce: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("EVENT_SPOOL_PATH", str(tmp_path / "not-a-dir" / "events.spool"))
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2, result.output
    assert "EVENT_SPOOL_PATH: cannot write events to" in result.output
    assert "not-a-dir: not a directory" in result.output
    assert woocommerce == []


def test_demo_reads_no_settings_and_takes_its_options(
    bare: list[tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A configuration `run` would reject does not matter to the demo: it uses none of it.
    monkeypatch.setenv("WOOCOMMERCE_URL", "http://shop.internal.test")
    monkeypatch.setenv("DATABASE_URL", "postgresql://syncworker@db.internal:5432/syncworker")
    result = CliRunner().invoke(main, ["demo", "--once", "--demo-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert bare == [(tmp_path / "d", True)]


def test_run_no_longer_takes_demo_options(bare: list[tuple[Path, bool]]) -> None:
    assert CliRunner().invoke(main, ["run", "--once"]).exit_code == 2
    assert bare == []


def test_incremental_and_full_runs_get_workers_of_their_own_and_beat_runs_apart(
    settings_factory: Any,
) -> None:
    commands = stack_commands(settings_factory(log_level="WARNING"))
    assert set(commands) == {"worker", "worker-full", "beat"}
    for name, queue in (("worker", "sync-incremental"), ("worker-full", "sync-full")):
        worker = commands[name]
        assert worker[worker.index("-A") + 1] == "worker"
        assert worker[worker.index("-Q") + 1] == queue  # a long full sync never takes an incremental slot
        assert worker[worker.index("-l") + 1] == "warning"
        assert "-B" not in worker  # an embedded beat would double-fire with a second replica
    assert (
        commands["worker"][commands["worker"].index("-n") + 1]
        != commands["worker-full"][commands["worker-full"].index("-n") + 1]
    )
    assert commands["beat"][-3:] == ["beat", "-l", "warning"]


def test_every_subcommand_is_mounted() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("run", "demo", "health", "runs", "events", "db", "breakers", "budgets", "sync"):
        assert f"  {name} " in result.output
