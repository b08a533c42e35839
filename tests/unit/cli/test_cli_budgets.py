"""`syncworker budgets` against fakeredis, with an in-memory event log."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from click.testing import CliRunner, Result

from worker.budget import budget_key, read_budget
from worker.cli import budgets as cli
from worker.cli.output import CliState

# The two sources the environment configures, each on its own host.
UPSTREAMS = {
    "odoo_url": "https://erp.shop.test", "odoo_db": "erp", "odoo_username": "sync@shop.test",
    "odoo_api_key": "odoo-key-0123456789",
    "woocommerce_url": "https://shop.test", "woocommerce_consumer_key": "ck_0123456789abcdef",
    "woocommerce_consumer_secret": "cs_0123456789abcdef",
}  # fmt: skip
PREFIX = "sw-budget-cli"


class RecordingEventLog:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, event_type: str, **fields: Any) -> None:
        self.events.append({"type": event_type, **fields})

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def unreachable_redis() -> fakeredis.FakeRedis:
    server = fakeredis.FakeServer()
    server.connected = False
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch, client: fakeredis.FakeRedis) -> RecordingEventLog:
    recorder = RecordingEventLog()
    monkeypatch.setattr(cli, "open_redis", lambda settings: client)
    monkeypatch.setattr(cli, "open_event_log", lambda settings: recorder)
    return recorder


@pytest.fixture
def invoke(settings_factory: Any) -> Any:
    settings = settings_factory(redis_key_prefix=PREFIX, **UPSTREAMS)

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli.budgets, list(args), obj=CliState(settings=settings))

    return run


def listed(invoke: Any) -> dict[str, dict[str, Any]]:
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    return {b["host"]: b for b in json.loads(result.stdout)}


def test_every_configured_host_and_every_host_known_to_redis_is_listed(
    log: RecordingEventLog, invoke: Any, client: fakeredis.FakeRedis
) -> None:
    # A host no configured source calls any more still has its state: it is listed, without a ceiling.
    client.hset(budget_key(PREFIX, "old.shop.test"), mapping={"rate": "3", "throttled": "7"})
    budgets = listed(invoke)
    assert sorted(budgets) == ["erp.shop.test", "old.shop.test", "shop.test"]
    shop = budgets["shop.test"]
    assert (shop["ceiling"], shop["configured_ceiling"], shop["operator_ceiling"]) == (25.0, 25.0, None)
    assert (shop["rate"], shop["paused"], shop["throttled"]) == (None, False, 0)
    assert (budgets["erp.shop.test"]["ceiling"], budgets["old.shop.test"]["configured_ceiling"]) == (
        10.0,
        None,
    )
    assert budgets["old.shop.test"]["throttled"] == 7
    table = invoke()  # the bare group lists too
    assert table.exit_code == 0
    assert "request budgets per host" in table.stdout and "old.shop.test" in table.stdout


def test_set_clear_and_reset_change_the_fleets_budget_and_are_audited(
    log: RecordingEventLog, invoke: Any, client: fakeredis.FakeRedis
) -> None:
    key = budget_key(PREFIX, "shop.test")
    client.hset(key, mapping={"rate": "20", "throttled": "4", "cuts": "2", "epoch": "2"})

    done = invoke("set", "https://Shop.test/wp-json", "5", "--actor", "alice")
    assert (done.exit_code, done.stdout) == (0, "shop.test: ceiling 5 requests/s fleet-wide (by alice)\n")
    shop = listed(invoke)["shop.test"]
    assert (shop["ceiling"], shop["operator_ceiling"], shop["configured_ceiling"]) == (5.0, 5.0, 25.0)
    assert shop["rate"] == 5.0  # never above the ceiling in force
    assert "5 (operator)" in invoke("list").stdout

    assert invoke("reset", "shop.test", "--actor", "bob").exit_code == 0
    after = read_budget(client, PREFIX, "shop.test", 25.0)
    assert (after.rate, after.throttled, after.cuts, after.operator_ceiling) == (None, 0, 0, 5.0)

    assert invoke("clear", "shop.test", "--actor", "carol").exit_code == 0
    assert listed(invoke)["shop.test"]["ceiling"] == 25.0

    assert log.types == ["budget.ceiling_set", "budget.reset", "budget.ceiling_cleared"]
    assert [e["metadata"]["actor"] for e in log.events] == ["alice", "bob", "carol"]
    assert {e["aggregate_id"] for e in log.events} == {"shop.test"}
    set_event, reset_event, _ = log.events
    assert set_event["payload"]["ceiling"] == 5.0 and set_event["payload"]["reason"] == "operator"
    # What a reset forgot stays in the record.
    assert (reset_event["payload"]["before"]["throttled"], reset_event["payload"]["before"]["cuts"]) == (4, 2)


def test_a_pause_shows_only_while_it_lasts(
    log: RecordingEventLog, invoke: Any, client: fakeredis.FakeRedis
) -> None:
    seconds, _ = client.time()
    client.hset(budget_key(PREFIX, "shop.test"), "paused_until", str(seconds + 120))
    client.hset(budget_key(PREFIX, "erp.shop.test"), "paused_until", str(seconds - 120))
    budgets = listed(invoke)
    assert budgets["shop.test"]["paused"] is True
    assert budgets["erp.shop.test"]["paused"] is False


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("set", "nowhere.test", "5"), "'nowhere.test'; known: erp.shop.test, shop.test"),
        (("set", "shop.test", "0"), "0.0 is not in the range x>0"),
        (("clear", "http://"), "has no host name"),
        (("reset", "shop.test:8443"), "'shop.test:8443'; known:"),
    ],
    ids=["unknown-host", "ceiling-not-positive", "url-without-host", "other-port"],
)
def test_a_host_no_source_calls_or_a_bad_ceiling_is_a_usage_error(
    log: RecordingEventLog, invoke: Any, args: tuple[str, ...], expected: str
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert log.events == []


def test_unreachable_redis_fails_loudly_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, invoke: Any
) -> None:
    recorder = RecordingEventLog()
    monkeypatch.setattr(cli, "open_redis", lambda settings: unreachable_redis())
    monkeypatch.setattr(cli, "open_event_log", lambda settings: recorder)
    for args in (("set", "shop.test", "5"), ("clear", "shop.test"), ("reset", "shop.test"), ("list",)):
        result = invoke(*args)
        assert result.exit_code == 1, args
        assert "budget store unreachable" in result.stderr and "nothing was changed" in result.stderr
    assert recorder.events == []
