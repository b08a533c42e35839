"""The story the demo tells: sync both sources, break WooCommerce, watch the fleet's breaker, recover.

Each step prints one line starting with ``==>`` (a milestone a script can wait for) and the evidence
from the real system: task outcomes, `syncworker breakers list`, event_log counts by type.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import redis
from rich.console import Console
from sqlalchemy import func, select

from models import EventLog
from worker.celeryapp.schedule import ODOO_TASK, WOOCOMMERCE_TASK
from worker.demo.stack import DemoStack
from worker.infra.db import make_engine, make_session_factory
from worker.infra.settings import Settings

SYNC_TIMEOUT = 60.0
MAX_OUTAGE_SYNCS = 4


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

    def milestone(self, text: str) -> None:
        self.out.print(f"[bold cyan]==> {text}[/]")
        sys.stdout.flush()

    def sync(self, task: str, queue: str) -> tuple[str, str]:
        """Enqueue one full sync and wait for its outcome; returns (status, worker node)."""
        from worker.cli.sync import TARGETS, send_request, wait_for

        target = next(t for t in TARGETS.values() if t.task == task and t.queue == queue)
        task_id, request = send_request(self.app, self.sessions, target, full=True)
        status = wait_for(
            self.app,
            task_id,
            self.sessions,
            request,
            timeout=SYNC_TIMEOUT,
            show=lambda line: self.out.print(f"    {line}"),
        )
        node = getattr(self.app.AsyncResult(task_id), "worker", None) or "?"
        return status or "timed out", str(node)

    def breaker_state(self, name: str) -> str:
        from worker.breaker import list_breakers

        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
        try:
            return next(str(s.state) for s in list_breakers(self.settings, client) if s.name == name)
        finally:
            client.close()

    def show_cli(self, *args: str) -> None:
        """Run a real `syncworker` command against the demo, as an operator would."""
        argv = [sys.executable, "-c", "from worker.cli import main; main()", *args]
        self.out.print(f"[dim]$ syncworker {' '.join(args)}[/]")
        done = subprocess.run(
            argv,
            env=self.stack.env,
            cwd=self.stack.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        self.out.print(done.stdout.rstrip() or done.stderr.rstrip())

    def event_counts(self) -> dict[str, int]:
        stmt = select(EventLog.event_type, func.count()).group_by(EventLog.event_type)
        with self.sessions() as session:
            return {str(t): int(n) for t, n in session.execute(stmt)}

    def run(self) -> None:
        self.reset_breakers()
        self.first_syncs()
        self.outage()
        self.recovery()
        self.engine.dispose()

    def reset_breakers(self) -> None:
        # A previous demo on the same Redis may have left a breaker open; start from closed.
        from worker.breaker import build_breaker

        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
        try:
            for name in ("odoo", "woocommerce"):
                if self.breaker_state(name) != "closed":
                    build_breaker(name, self.settings, client, _NoEvents()).reset("demo")
        finally:
            client.close()

    def first_syncs(self) -> None:
        self.milestone("step 1: a full sync of each source")
        for task, queue in ((ODOO_TASK, "odoo"), (WOOCOMMERCE_TASK, "woocommerce")):
            status, node = self.sync(task, queue)
            self.out.print(f"    {task}: [bold]{status}[/] on {node}")
            if status != "succeeded":
                raise ScenarioFailed(f"{task} ended {status}")
        self.milestone("initial syncs succeeded")
        self.show_cli("runs", "--limit", "4")

    def outage(self) -> None:
        self.milestone("step 2: WooCommerce goes down (connections refused)")
        self.stack.woo.faults.set(kind="down")
        for attempt in range(1, MAX_OUTAGE_SYNCS + 1):
            status, node = self.sync(WOOCOMMERCE_TASK, "woocommerce")
            state = self.breaker_state("woocommerce")
            self.out.print(
                f"    sync #{attempt}: [bold]{status}[/] on {node}; breaker woocommerce is {state}"
            )
            if state == "open":
                break
        else:
            raise ScenarioFailed("the woocommerce breaker did not open")
        self.milestone("breaker woocommerce is OPEN for every worker")
        # Both nodes now refuse at once, without calling the upstream.
        for _ in range(2):
            status, node = self.sync(WOOCOMMERCE_TASK, "woocommerce")
            self.out.print(f"    sync while open: [bold]{status}[/] on {node}")
        self.show_cli("breakers", "list")
        failures = {t: n for t, n in self.event_counts().items() if not t.startswith("sync.completed")}
        self.out.print(f"    event_log by type: {failures}")
        self.milestone("failures recorded in event_log")

    def recovery(self) -> None:
        self.milestone("step 3: WooCommerce comes back")
        self.stack.woo.faults.clear()
        wait = self.settings.woocommerce_breaker.open_seconds + 1
        self.out.print(f"    waiting {wait:g}s for the breaker's open period to end")
        time.sleep(wait)
        for _ in range(3):
            status, node = self.sync(WOOCOMMERCE_TASK, "woocommerce")
            state = self.breaker_state("woocommerce")
            self.out.print(f"    sync: [bold]{status}[/] on {node}; breaker woocommerce is {state}")
            if status == "succeeded" and state == "closed":
                break
            time.sleep(wait)
        else:
            raise ScenarioFailed("the woocommerce breaker did not close after recovery")
        self.milestone("breaker woocommerce is CLOSED again")
        self.show_cli("breakers", "list")


class _NoEvents:
    """The demo's own reset is not an operational event worth recording."""

    def record(self, event_type: str, **kwargs: Any) -> None:
        return None
