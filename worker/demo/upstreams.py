"""The demo's upstreams, two WooCommerce shops and one Odoo database, declared as an operator would.

Each upstream is a simulator on a loopback port of its own, so one shop can go down (connections
refused) while the other keeps answering. ``declare`` writes what an operator keeps: a YAML file whose
credentials are ``file:`` references (so it can live in git), one file per credential readable by its
owner only, and the Fernet key that `syncworker sources apply` seals them with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from worker.sandbox import OdooSimulator, WooCommerceSimulator

NORTH, SOUTH, ERP = "shop-north", "shop-south", "erp"
SHOP_SEEDS = {NORTH: 7, SOUTH: 8}
ERP_SEED = 7
WOO_SIZE = 120
ODOO_SIZE = 150
DECLARATIONS_FILE = "sources.yaml"
CREDENTIALS_DIR = "credentials"
KEY_FILE = "sources.key"
# Beat ticks a shop more often than its breaker stays open, so an open breaker visibly skips ticks.
SHOP_SCHEDULE = {"incremental_interval_seconds": 5}
# Short periods so that the outage and the recovery both fit in a minute; declared per source.
BREAKER = {"failure_threshold": 3, "open_seconds": 20, "open_max_seconds": 40, "success_threshold": 1}
HEADER = "# The demo's sources: `syncworker sources apply` reads the credentials from the files named.\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable and writable by its owner only, whatever mode the file had before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


def demo_key(workdir: Path) -> str:
    """The demo directory's own Fernet key, made on first use.

    It is kept, not made anew each time: the credentials of an earlier demo in the same database
    are sealed with it, and `sources apply` must open them to compare.
    """
    path = workdir / KEY_FILE
    if not path.exists():
        write_private(path, Fernet.generate_key().decode() + "\n")
    key = path.read_text(encoding="utf-8").strip()
    try:
        Fernet(key)
    except ValueError:
        msg = f"{path} does not hold a Fernet key; delete it together with the demo's database"
        raise RuntimeError(msg) from None
    return key


@dataclass
class DemoUpstreams:
    shops: dict[str, WooCommerceSimulator] = field(
        default_factory=lambda: {
            name: WooCommerceSimulator(seed, WOO_SIZE) for name, seed in SHOP_SEEDS.items()
        }
    )
    erp: OdooSimulator = field(
        default_factory=lambda: OdooSimulator(ERP_SEED, ODOO_SIZE, db=ERP, login=f"sync@{ERP}.test")
    )

    def simulators(self) -> list[Any]:
        return [*self.shops.values(), self.erp]

    def start(self) -> None:
        for simulator in self.simulators():
            simulator.start()

    def stop(self) -> None:
        for simulator in self.simulators():
            simulator.stop()

    def credentials(self) -> dict[str, dict[str, str]]:
        """Source -> credential field -> value: what goes into the credential files."""
        found = {
            name: {"consumer_key": shop.consumer_key, "consumer_secret": shop.consumer_secret}
            for name, shop in self.shops.items()
        }
        return {ERP: {"api_key": self.erp.api_key}, **found}

    def secret_values(self) -> list[str]:
        return [value for fields in self.credentials().values() for value in fields.values()]

    def declarations(self) -> dict[str, Any]:
        """The YAML document: every credential a ``file:`` reference relative to the file itself."""
        refs = {
            source: {f: f"file:{CREDENTIALS_DIR}/{source}.{f}" for f in fields}
            for source, fields in self.credentials().items()
        }
        erp = {
            "name": ERP,
            "kind": "odoo",
            "url": self.erp.base_url,
            "options": {"db": self.erp.db, "username": self.erp.login},
            "credentials": refs[ERP],
            "overrides": {"breaker": dict(BREAKER)},
        }
        shops = [
            {
                "name": name,
                "kind": "woocommerce",
                "url": shop.base_url,
                "credentials": refs[name],
                "schedule": dict(SHOP_SCHEDULE),
                "overrides": {"breaker": dict(BREAKER)},
            }
            for name, shop in self.shops.items()
        ]
        return {"sources": [erp, *shops]}

    def declare(self, workdir: Path) -> Path:
        """Write the credential files (0600) and the YAML file; returns the YAML file's path."""
        directory = workdir / CREDENTIALS_DIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
        for source, fields in self.credentials().items():
            for name, value in fields.items():
                write_private(directory / f"{source}.{name}", value + "\n")
        path = workdir / DECLARATIONS_FILE
        body = yaml.safe_dump(self.declarations(), sort_keys=False)
        path.write_text(HEADER + body, encoding="utf-8")
        return path
