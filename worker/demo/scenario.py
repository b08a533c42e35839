"""The story the demo tells: declare three sources, sync them, take one shop down while the other keeps
syncing, watch that shop's breaker open for the whole fleet and close again.

Each step prints one line starting with ``==>`` (a milestone a script can wait for) and the evidence
from the real system: task outcomes, the mirror, `syncworker breakers list`, event_log counts by type.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import redis
from rich.console import Console
from rich.markup import escape
from sqlalchemy import func, select

from models import EventLog, Product
from worker.celeryapp.scheduler import SKIP_EVENT
from worker.demo.stack import DemoStack
from worker.demo.upstreams import BREAKER, CREDENTIALS_DIR, ERP, NORTH, SOUTH
from worker.infra.db import make_engine, make_session_factory
from worker.infra.settings import Settings

SYNC_TIMEOUT = 60.0
NORTH_BREAKER, SOUTH_BREAKER = f"woocommerce:{NORTH}", f"woocommerce:{SOUTH}"
MAX_OUTAGE_SYNCS = 4
# Beat ticks each shop every few seconds; the first tick inside the open period is skipped.
BEAT_SKIP_TIMEOUT = float(BREAKER["open_seconds"])
RECOVERY_TIMEOUT = 2 * float(BREAKER["open_max_seconds"])
POLL_SECONDS = 0.5
PUBLISHED = frozenset({"publish"})
EDITED_NAME = "Renamed in shop-north during the outage"


class ScenarioFailed(RuntimeError):
    """A milestone the demo promises did not happen."""


class Scenario:
    def __init__(self, stack: DemoStack, app: Any, out: Console) -> None:
        self.stack = stack
        self.app = app
        self.out = out
        self.settings: Settings = stack.settings()
        self.engine = make_engine(self.settings.database_url)
        self.sessions = make_session_factory(self.engine)
        # Events before this id belong to earlier steps, or to an earlier demo in the same directory.
        self.outage_started_after = 0

    def milestone(self, text: str) -> None:
        self.out.print(f"[bold cyan]==> {text}[/]")
        sys.stdout.flush()

    def say(self, text: str) -> None:
        self.out.print(f"    {text}")

    def show_cli(self, *args: str) -> None:
        """Run a real `syncworker` command against the demo and print what it printed."""
        self.out.print(f"[dim]$ syncworker {' '.join(args)}[/]")
        done = self.stack.cli(*args)
        self.out.print(escape(done.stdout.rstrip() or done.stderr.rstrip()))

    def sync(self, source: str, *, full: bool = False) -> tuple[str, str]:
        """Enqueue one sync of ``source`` and wait for its outcome; returns (status, worker node)."""
        from worker.cli.sync import send_request, wait_for

        task_id, request = send_request(self.app, self.sessions, source, full=full)
        status = wait_for(
            self.app, task_id, self.sessions, request, timeout=SYNC_TIMEOUT, show=lambda line: self.say(line)
        )
        node = getattr(self.app.AsyncResult(task_id), "worker", None) or "?"
        return status or "timed out", str(node)

    def breakers(self) -> dict[str, Any]:
        """Breaker name -> its stats, for every declared source."""
        from worker.breaker import list_breakers
        from worker.sources.catalog import fleet_breaker_policies

        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
        try:
            policies = fleet_breaker_policies(self.settings)
            return {s.name: s for s in list_breakers(self.settings, client, policies)}
        finally:
            client.close()

    def breaker_state(self, name: str) -> str:
        return str(self.breakers()[name].state)

    def last_event_id(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.max(EventLog.id))) or 0)

    def event_counts(self) -> dict[str, int]:
        """Events since the outage began, by type."""
        stmt = (
            select(EventLog.event_type, func.count())
            .where(EventLog.id > self.outage_started_after)
            .group_by(EventLog.event_type)
        )
        with self.sessions() as session:
            return {str(t): int(n) for t, n in session.execute(stmt)}

    def beat_skips(self, source: str) -> int:
        """How many of ``source``'s ticks beat skipped, since the outage began, for its open breaker."""
        stmt = select(EventLog.payload).where(
            EventLog.event_type == SKIP_EVENT,
            EventLog.aggregate_id == source,
            EventLog.id > self.outage_started_after,
        )
        with self.sessions() as session:
            return sum(1 for p in session.scalars(stmt) if (p or {}).get("by") == "beat")

    def mirrored_name(self, source: str, woo_id: int) -> str | None:
        stmt = select(Product.name).where(Product.source == source, Product.woo_id == woo_id)
        with self.sessions() as session:
            return session.scalars(stmt).first()

    def run(self) -> None:
        self.first_syncs()
        self.outage()
        self.recovery()
        self.engine.dispose()

    def declare_sources(self) -> None:
        """As an operator would: a YAML file with file: credentials, `sources apply`, `sources list`."""
        self.stack.migrate()
        path = self.stack.upstreams.declare(self.stack.workdir)
        where = path.parent / CREDENTIALS_DIR
        self.out.print(f"[dim]{path.name} (its credentials are files in {where}, mode 0600):[/]")
        self.out.print(escape(path.read_text(encoding="utf-8").rstrip()))
        self.show_cli("sources", "apply", path.name)
        self.show_cli("sources", "list")
        listed = self.stack.cli("sources", "list", "--json")
        names = {s["name"] for s in json.loads(listed.stdout)} if listed.returncode == 0 else set()
        if not {ERP, NORTH, SOUTH} <= names:
            msg = "`syncworker sources apply` did not declare the demo's sources"
            raise ScenarioFailed(msg)
        self.milestone(f"sources declared: {NORTH} and {SOUTH} (WooCommerce), {ERP} (Odoo)")

    def first_syncs(self) -> None:
        self.milestone("step 1: a full sync of each source")
        for source in (ERP, NORTH, SOUTH):
            status, node = self.sync(source, full=True)
            self.say(f"{source}: [bold]{status}[/] on {node}")
            if status != "succeeded":
                raise ScenarioFailed(f"{source} ended {status}")
        self.milestone("initial syncs succeeded")
        self.show_cli("runs", "--limit", "3")

    def outage(self) -> None:
        self.milestone(f"step 2: {SOUTH} goes down (connections refused); {NORTH} stays up")
        self.outage_started_after = self.last_event_id()
        self.stack.upstreams.shops[SOUTH].faults.set(kind="down")
        self.open_south_breaker()
        self.milestone(f"breaker {SOUTH_BREAKER} is OPEN for every worker")
        self.north_keeps_syncing()
        status, node = self.sync(SOUTH)
        self.say(f"{SOUTH}: [bold]{status}[/] on {node} (no request reached the shop)")
        self.wait_for_beat_skip()
        self.milestone(f"{NORTH} keeps syncing while {SOUTH} is skipped")
        self.show_cli("breakers", "list")
        failures = {t: n for t, n in self.event_counts().items() if not t.startswith("sync.completed")}
        self.say(f"event_log since the outage began, by type: {failures}")
        self.milestone("failures recorded in event_log")

    def open_south_breaker(self) -> None:
        # Beat's own ticks of the shop fail too: the breaker may already be open when a sync is sent.
        for attempt in range(1, MAX_OUTAGE_SYNCS + 1):
            status, node = self.sync(SOUTH)
            state = self.breaker_state(SOUTH_BREAKER)
            self.say(
                f"{SOUTH} sync #{attempt}: [bold]{status}[/] on {node}; breaker {SOUTH_BREAKER} is {state}"
            )
            if state == "open":
                return
        raise ScenarioFailed(f"the breaker {SOUTH_BREAKER} did not open")

    def north_keeps_syncing(self) -> None:
        """Edit a product in shop-north as its admin would; the next sync of shop-north mirrors it."""
        north = self.stack.upstreams.shops[NORTH]
        product_id = north.catalog.query_products(statuses=PUBLISHED, orderby="id", descending=False)[0]
        north.catalog.change(product_id, name=EDITED_NAME)
        self.say(f"{NORTH}: product {product_id} renamed upstream to {EDITED_NAME!r}")
        status, node = self.sync(NORTH)
        mirrored = self.mirrored_name(NORTH, product_id)
        state = self.breaker_state(NORTH_BREAKER)
        self.say(f"{NORTH}: [bold]{status}[/] on {node}; the mirror says {mirrored!r}")
        self.say(f"breaker {NORTH_BREAKER} is {state}")
        if status != "succeeded" or mirrored != EDITED_NAME or state != "closed":
            raise ScenarioFailed(f"{NORTH} did not keep syncing while {SOUTH} was down")

    def wait_for_beat_skip(self) -> None:
        deadline = time.monotonic() + BEAT_SKIP_TIMEOUT
        while (skips := self.beat_skips(SOUTH)) == 0:
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"beat did not skip a tick of {SOUTH} within {BEAT_SKIP_TIMEOUT:g}s")
            time.sleep(POLL_SECONDS)
        self.say(f"beat skipped {skips} tick(s) of {SOUTH} without sending them ({SKIP_EVENT}, by beat)")

    def recovery(self) -> None:
        self.milestone(f"step 3: {SOUTH} comes back")
        self.stack.upstreams.shops[SOUTH].faults.clear()
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while time.monotonic() < deadline:
            self.wait_for_probe()
            status, node = self.sync(SOUTH)
            state = self.breaker_state(SOUTH_BREAKER)
            self.say(f"{SOUTH} sync: [bold]{status}[/] on {node}; breaker {SOUTH_BREAKER} is {state}")
            if status == "succeeded" and state == "closed":
                break
        else:
            raise ScenarioFailed(f"the breaker {SOUTH_BREAKER} did not close after recovery")
        self.milestone(f"breaker {SOUTH_BREAKER} is CLOSED again")
        self.show_cli("breakers", "list")

    def wait_for_probe(self) -> None:
        """Sleep until the breaker lets a probe through (its next attempt time, in Redis time)."""
        stats = self.breakers()[SOUTH_BREAKER]
        if str(stats.state) != "open" or stats.next_attempt_at is None:
            return
        wait = max(0.0, stats.next_attempt_at - time.time()) + POLL_SECONDS
        self.say(f"waiting {wait:.0f}s for the breaker's open period to end")
        time.sleep(wait)
