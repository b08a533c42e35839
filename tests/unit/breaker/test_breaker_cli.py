"""`syncworker breakers` against fakeredis, with an in-memory event log."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from breaker_helpers import RecordingEventLog, unreachable_redis
from click.testing import CliRunner

from worker.cli import breakers as cli
from worker.cli.output import CliState
from worker.infra.settings import load_settings


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingEventLog:
    client = fakeredis.FakeRedis()
    recorder = RecordingEventLog()
    monkeypatch.setattr(cli, "open_redis", lambda settings: client)
    monkeypatch.setattr(cli, "open_event_log", lambda settings: recorder)
    return recorder


# One breaker per configured source; these two are configured by environment variables.
ODOO = "odoo:odoo-suppliers"
WOO = "woocommerce:woocommerce-products"
UPSTREAMS = {
    "odoo_url": "https://erp.shop.test", "odoo_db": "erp", "odoo_username": "sync@shop.test",
    "odoo_api_key": "odoo-key-0123456789",
    "woocommerce_url": "https://shop.test", "woocommerce_consumer_key": "ck_0123456789abcdef",
    "woocommerce_consumer_secret": "cs_0123456789abcdef",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _database(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")


def invoke(*args: str) -> tuple[int, str]:
    state = CliState(settings=load_settings(redis_key_prefix="sw-cli-test", **UPSTREAMS))
    result = CliRunner().invoke(cli.breakers, list(args), obj=state)
    return result.exit_code, result.output


def test_open_show_close_reset_are_audited(log: RecordingEventLog) -> None:
    assert invoke("open", ODOO, "--actor", "alice") == (0, f"{ODOO}: closed -> forced_open (by alice)\n")
    code, out = invoke("show", ODOO, "--json")
    assert code == 0
    assert json.loads(out)["state"] == "forced_open"
    assert invoke("close", ODOO, "--actor", "bob")[0] == 0
    assert invoke("reset", ODOO, "--actor", "carol")[0] == 0
    assert log.types == ["breaker.forced_open", "breaker.forced_closed", "breaker.reset"]
    assert [e["metadata"]["actor"] for e in log.events] == ["alice", "bob", "carol"]


def test_list_table_and_json(log: RecordingEventLog) -> None:
    invoke("open", WOO, "--actor", "alice")
    code, out = invoke("list", "--json")
    assert code == 0
    assert {b["name"]: b["state"] for b in json.loads(out)} == {
        ODOO: "closed",
        WOO: "forced_open",
    }
    code, out = invoke("list")
    assert code == 0
    assert "woocommerce" in out and "forced_open" in out


def test_unknown_breaker_is_a_usage_error(log: RecordingEventLog) -> None:
    assert invoke("open", "shopify")[0] == 2


def test_unreachable_redis_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingEventLog()
    monkeypatch.setattr(cli, "open_redis", lambda settings: unreachable_redis())
    monkeypatch.setattr(cli, "open_event_log", lambda settings: recorder)
    code, out = invoke("open", ODOO, "--actor", "alice")
    assert code == 1
    assert "unreachable" in out and "nothing was changed" in out
    assert recorder.events == []


def test_list_does_not_pass_off_local_state_when_redis_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "open_redis", lambda settings: unreachable_redis())
    code, out = invoke("list", "--json")
    assert code == 1
    assert "unreachable" in out
