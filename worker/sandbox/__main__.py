"""``python -m worker.sandbox woocommerce|odoo --port N --size N --seed N``: one simulator, foreground.

It prints the base URL and the (fake) credentials so a demo can point syncworker at it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from worker.sandbox.http import Simulator
from worker.sandbox.odoo import OdooSimulator
from worker.sandbox.woocommerce import WooCommerceSimulator


def build(args: argparse.Namespace) -> Simulator:
    if args.upstream == "woocommerce":
        return WooCommerceSimulator(args.seed, args.size, host=args.host, port=args.port)
    return OdooSimulator(
        args.seed, args.size, host=args.host, port=args.port, version=args.odoo_version,
        xmlrpc_enabled=not args.no_xmlrpc,
    )  # fmt: skip


def describe(sim: Simulator) -> list[str]:
    """The settings a demo needs, in the variable names syncworker reads."""
    lines = [f"{type(sim).__name__} listening on {sim.base_url}"]
    if isinstance(sim, WooCommerceSimulator):
        lines += [
            f"WOOCOMMERCE_URL={sim.base_url}",
            f"WOOCOMMERCE_CONSUMER_KEY={sim.consumer_key}",
            f"WOOCOMMERCE_CONSUMER_SECRET={sim.consumer_secret}",
        ]
    elif isinstance(sim, OdooSimulator):
        lines += [
            f"ODOO_URL={sim.base_url}",
            f"ODOO_DB={sim.db}",
            f"ODOO_USERNAME={sim.login}",
            f"ODOO_API_KEY={sim.api_key}",
            f"# Odoo {sim.version}, XML-RPC {'on' if sim.xmlrpc_enabled else 'off'}",
        ]
    lines.append(f'# faults: curl -X POST {sim.base_url}/__faults__ -d \'{{"kind":"status","status":503}}\'')
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.sandbox")
    parser.add_argument("upstream", choices=("woocommerce", "odoo"))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--odoo-version", default="17.0")
    parser.add_argument("--no-xmlrpc", action="store_true", help="Odoo 19+: answer 404 on XML-RPC")
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with build(args) as sim:
        # The credentials are fake and exist only in this process: printing them is the point.
        print("\n".join(describe(sim)), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
