"""The one-command demo: everything syncworker needs, on this machine, telling its own story.

`syncworker demo` lands here, and so does `syncworker run` on a machine where nothing is configured.
The demo uses nothing the operator configured: see ``stack`` for what runs, ``upstreams`` for the
sources it declares and ``scenario`` for what it shows; Ctrl-C (or SIGTERM) stops everything it
started, warm.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from celery import Celery
from rich.console import Console

from worker.celeryapp.config import build_config
from worker.demo.scenario import Scenario, ScenarioFailed
from worker.demo.stack import DemoStack, is_operator_setting
from worker.demo.upstreams import NORTH, SOUTH
from worker.infra.settings import Settings


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _stop_behind(exc: BaseException) -> _Stop | None:
    """The stop behind ``exc``: libraries (pydantic-settings) wrap what a handler raised inside them."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _Stop):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _banner(stack: DemoStack, out: Console) -> None:
    user, password = stack.flower_auth
    env_file = stack.workdir / "env"
    out.print(f"\n[bold green]Flower[/]  {stack.flower_url}  (user {user}, password {password})")
    if stack.metrics_up():
        out.print(f"[bold green]Metrics[/] {stack.metrics_url}")
    out.print(f"[bold green]Redis[/]   {stack.redis_url}   [bold green]Database[/] {stack.database_url}")
    out.print(f"\nTry, from another terminal (the demo's settings are in {env_file}):")
    for cmd in (
        "sources list",
        "breakers list",
        f"runs --source {SOUTH}",
        "events --type breaker.",
        "events --follow",
        f"sync {NORTH} --wait",
    ):
        out.print(f"  env $(cat {env_file}) {_cli()} {cmd}")
    out.print("\nBeat keeps scheduling syncs. Press Ctrl-C to stop everything.\n")


def _cli() -> str:
    """How to call the CLI from another shell: bare when it is on PATH, else beside this Python."""
    import shutil

    if shutil.which("syncworker"):
        return "syncworker"
    beside = Path(sys.executable).parent / "syncworker"
    return str(beside) if beside.exists() else "syncworker"


def forget_operator_settings() -> None:
    """Drop the operator's settings from this process's environment.

    Celery reads CELERY_BROKER_URL (and its READ/WRITE variants, CELERY_RESULT_BACKEND) from the
    environment over an app's own configuration, so the demo's client would otherwise enqueue on the
    operator's broker; the children inherit what is left.
    """
    for name in [k for k in os.environ if is_operator_setting(k)]:
        del os.environ[name]


def client_app(settings: Settings) -> Celery:
    # Not ``worker.celeryapp.app``: importing it builds the process-wide app from the operator's settings.
    app = Celery("syncworker-demo")
    app.config_from_object(build_config(settings))
    return app


def run_demo(*, workdir: Path, once: bool) -> int:
    """Bring the demo up, run the scenario, then wait for Ctrl-C (or return at once with ``once``)."""
    forget_operator_settings()
    out = Console(force_terminal=sys.stdout.isatty(), soft_wrap=True)
    stack = DemoStack(workdir.resolve())
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        out.print(
            "[bold]syncworker demo[/]: two simulated WooCommerce shops and an Odoo database, a private"
            " Redis and an SQLite file; nothing configured in the environment or .env is used."
        )
        stack.start_services(os.environ)
        out.print(f"    Redis at {stack.redis_url}, database {stack.database_url}")
        app = client_app(stack.settings())
        scenario = Scenario(stack, app, out)
        scenario.declare_sources()
        stack.start_processes()
        stack.wait_ready(app)
        out.print("[bold cyan]==> workers demo1 and demo2, beat and Flower are up[/]")
        scenario.run()
        out.print("[bold cyan]==> demo scenario complete[/]")
        _banner(stack, out)
        while not once:
            dead = stack.supervisor.first_exit()
            if dead is not None:
                out.print(f"[red]{dead.name} exited with status {dead.process.returncode}; stopping[/]")
                status = 1
                break
            time.sleep(0.5)
    except Exception as exc:
        stop = _stop_behind(exc)
        if stop is not None:
            out.print(f"\n{stop}: stopping everything (workers finish their current page first)")
        elif isinstance(exc, (ScenarioFailed, RuntimeError)):
            out.print(f"[bold red]demo failed:[/] {exc} (logs in {stack.workdir})")
            status = 1
        else:
            raise
    finally:
        # A second Ctrl-C must not abandon the children half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        out.print("[bold cyan]==> demo stopped[/]")
    return status
