"""Flower tells the truth: an outage shows up in its task list and counters as failures and skips,
and `syncworker runs` and `sync --wait` agree with what it shows."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from celery import Celery
from click.testing import CliRunner
from e2e_harness import CeleryProcess, Stack, enqueue, outcome, runs, wait_until
from sqlalchemy import Engine

from worker.cli import main
from worker.cli.output import CliState
from worker.infra.settings import Settings
from worker.sandbox.woocommerce import WooCommerceSimulator

pytestmark = pytest.mark.e2e
WOO = "woocommerce-products"
AUTH = ("ops", uuid.uuid4().hex)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def flower(stack: Stack) -> Iterator[str]:
    port = free_port()
    args = ["flower", f"--port={port}", "--address=127.0.0.1", f"--basic-auth={AUTH[0]}:{AUTH[1]}"]
    proc = CeleryProcess(args, stack.env, stack.tmp_path / "flower.log")
    stack.processes.append(proc)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{url}/healthcheck", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, timeout=60, what="Flower to answer")
    yield url


def flower_tasks(url: str) -> dict[str, dict[str, Any]]:
    answer = requests.get(f"{url}/api/tasks", auth=AUTH, timeout=5)
    answer.raise_for_status()
    tasks: dict[str, dict[str, Any]] = answer.json()
    return tasks


def event_counts(url: str) -> dict[str, float]:
    """Flower's own counters: ``flower_events_total`` summed per event type."""
    counts: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("flower_events_total{"):
            labels, _, value = line.rpartition(" ")
            kind = labels.split('type="', 1)[1].split('"', 1)[0]
            counts[kind] = counts.get(kind, 0.0) + float(value)
    return counts


def cli(settings: Settings, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), obj=CliState(settings=settings), catch_exceptions=False)


def test_an_outage_shows_in_flower_as_failures_and_skips_and_the_cli_agrees(
    stack: Stack,
    flower: str,
    woo: WooCommerceSimulator,
    db: Engine,
    client_app: Celery,
    e2e_settings: Settings,
) -> None:
    stack.worker()
    # A malformed record: the run finishes, but the mirror is not exact -- visibly partial.
    victim = next(iter(woo.catalog.iter_products(include_trash=False)))["id"]
    woo.catalog.corrupt(victim, price={"not": "a price"}, regular_price=["nope"])
    partial = enqueue(client_app, WOO, full=True)
    assert outcome(partial, 120)[0] == "PARTIAL"

    # The upstream goes down: runs fail (with their error), then the breaker opens and runs skip.
    woo.faults.set(kind="status", status=503, rate=1.0)
    failed = enqueue(client_app, WOO, full=True)
    state, error = outcome(failed, 120)
    assert state == "FAILURE"
    assert type(error).__name__ == "SyncRunFailed"
    failed_run = runs(db, WOO)[-1]
    assert f"run {failed_run['id']} failed" in str(error) and "503" in str(error)
    skipped = None
    for _ in range(10):
        attempt = enqueue(client_app, WOO, full=False)
        if outcome(attempt, 120)[0] == "SKIPPED":
            skipped = attempt
            break
    assert skipped is not None, "the breaker never opened"

    # Flower shows each in its own state, as its task list and its counters say.
    expected = {partial.id: "PARTIAL", failed.id: "FAILURE", skipped.id: "SKIPPED"}
    wait_until(
        lambda: {i: flower_tasks(flower).get(i, {}).get("state") for i in expected} == expected,
        timeout=30,
        what="Flower to show the outcomes",
    )
    shown = flower_tasks(flower)
    assert "SyncRunFailed" in shown[failed.id]["exception"]
    assert not any(t["state"] == "SUCCESS" for t in shown.values())  # nothing green in an outage
    counts = event_counts(flower)
    assert counts.get("task-failed", 0) >= 1
    assert counts.get("task-skipped", 0) >= 1
    assert counts.get("task-partial", 0) == 1
    assert counts.get("task-succeeded", 0) == 0

    # `sync --wait` and `syncworker runs` tell the same story.
    waited = cli(e2e_settings, "sync", WOO, "--wait", "--timeout", "60")
    assert waited.exit_code == 4, waited.output
    assert waited.output.rstrip().endswith(f"{WOO} skipped_breaker_open")
    listed = cli(e2e_settings, "runs", "--json")
    assert listed.exit_code == 0, listed.output
    statuses = {r["status"] for r in json.loads(listed.output)}
    assert {"partial", "failed", "skipped_breaker_open"} <= statuses
