"""The `syncworker` command. Subcommands are imported when used, so one missing part never breaks the rest."""

from __future__ import annotations

import importlib

import click

from worker.cli.output import CliState

# name -> "module:attribute"; each module owns one command or group.
COMMANDS = {
    "run": "worker.cli.run:run",
    "demo": "worker.cli.demo:demo",
    "health": "worker.cli.health:health",
    "runs": "worker.cli.runs:runs",
    "events": "worker.cli.events:events",
    "db": "worker.cli.db:db",
    "breakers": "worker.cli.breakers:breakers",
    "budgets": "worker.cli.budgets:budgets",
    "sync": "worker.cli.sync:sync",
    "history": "worker.cli.history:history",
    "sources": "worker.cli.sources:sources",
}


def _load(target: str) -> click.Command | None:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the command's own module may be missing (a build without it); any other import error is a bug.
        if exc.name != module_name:
            raise
        return None
    command = getattr(module, attr)
    assert isinstance(command, click.Command)
    return command


class LazyGroup(click.Group):
    """Lists and loads the subcommands in ``COMMANDS`` on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, target in COMMANDS.items() if _load(target) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        return _load(target) if target else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """syncworker: mirror Odoo suppliers and WooCommerce products into SQL, behind a fleet-wide breaker."""
    ctx.ensure_object(CliState)


__all__ = ["main"]
