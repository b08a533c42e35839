"""``python -m worker.sandbox woocommerce|odoo --port N --size N --seed N``: one simulator, foreground.

It prints the base URL and the (fake) credentials so a demo can point syncworker at it.
``woo-fleet --shops N`` and ``odoo-fleet --databases N`` serve many tenants from this one process and
print one JSON line per tenant, shaped as a source (name, kind, url, options, credentials).
``--throttle-rate R`` puts the host's hidden rate limit in front of it (every tenant together), with
``--throttle-burst``, ``--throttle-retry-after-share`` and ``--throttle-retry-after``; its counters and
arrival log are at ``GET /__throttle__?log=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from worker.sandbox.faults import FaultSpecError
from worker.sandbox.fleet import DEFAULT_SIZE, Fleet, OdooFleet, WooFleet
from worker.sandbox.fleet_http import EDIT_PATH
from worker.sandbox.http import CONTROL_PATH, Simulator
from worker.sandbox.odoo import OdooSimulator
from worker.sandbox.throttle import DEFAULT_LOG_SIZE, THROTTLE_PATH, HostThrottle, ThrottleSpec
from worker.sandbox.woocommerce import WooCommerceSimulator

N = TypeVar("N", int, float)
SINGLE_SIZE = 1000
FLEETS = ("woo-fleet", "odoo-fleet")


def build(args: argparse.Namespace) -> Simulator | Fleet[Any]:
    throttle = host_throttle(args)
    if args.upstream == "woo-fleet":
        return WooFleet(
            args.shops, args.size, seed=args.seed, latency_ms=args.latency_ms, host=args.host, port=args.port,
            prefix=args.prefix or "shop", throttle=throttle,
        )  # fmt: skip
    if args.upstream == "odoo-fleet":
        return OdooFleet(
            args.databases, args.size, seed=args.seed, version=args.odoo_version,
            xmlrpc_enabled=not args.no_xmlrpc, latency_ms=args.latency_ms, host=args.host, port=args.port,
            prefix=args.prefix or "db", throttle=throttle,
        )  # fmt: skip
    if args.upstream == "woocommerce":
        return WooCommerceSimulator(args.seed, args.size, host=args.host, port=args.port, throttle=throttle)
    return OdooSimulator(
        args.seed, args.size, host=args.host, port=args.port, version=args.odoo_version,
        xmlrpc_enabled=not args.no_xmlrpc, throttle=throttle,
    )  # fmt: skip


def host_throttle(args: argparse.Namespace) -> HostThrottle:
    spec = ThrottleSpec.from_mapping(
        {
            "rate": args.throttle_rate,
            "burst": args.throttle_burst,
            "retry_after_share": args.throttle_retry_after_share,
            "retry_after": args.throttle_retry_after,
        }
    )
    return HostThrottle(spec, log_size=args.throttle_log_size)


def describe_fleet(fleet: Fleet[Any]) -> list[str]:
    """One JSON line per tenant, each ready to register as a source."""
    return [json.dumps(source, separators=(",", ":")) for source in fleet.sources()]


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


def at_least(minimum: int, kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse type that refuses values below ``minimum``."""

    def convert(text: str) -> N:
        value = kind(text)
        if value < minimum:
            msg = f"must be at least {minimum}, not {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return convert


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.sandbox")
    parser.add_argument("upstream", choices=("woocommerce", "odoo", *FLEETS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--size", type=at_least(0, int), help=f"records per tenant ({SINGLE_SIZE}; fleets {DEFAULT_SIZE})"
    )
    parser.add_argument("--seed", type=int, default=1, help="fleets: the first tenant's, then +1 each")
    parser.add_argument("--odoo-version", default="17.0")
    parser.add_argument("--no-xmlrpc", action="store_true", help="Odoo 19+: answer 404 on XML-RPC")
    parser.add_argument("--shops", type=at_least(1, int), help="woo-fleet: how many shops (default 2)")
    parser.add_argument(
        "--databases", type=at_least(1, int), help="odoo-fleet: how many databases (default 2)"
    )
    parser.add_argument("--latency-ms", type=at_least(0, float), help="fleets: added to each API request")
    parser.add_argument(
        "--prefix", help="fleets: tenant names are <prefix>-001... (shop, db); distinct per fleet process"
    )
    parser.add_argument(
        "--throttle-rate", type=float, help="the host answers 429 above this many requests/s (default: never)"
    )
    parser.add_argument("--throttle-burst", type=at_least(1, int), default=ThrottleSpec.burst)
    parser.add_argument(
        "--throttle-retry-after-share", type=float, default=0.0, help="share of the 429s with Retry-After"
    )
    parser.add_argument("--throttle-retry-after", type=at_least(0, int), default=ThrottleSpec.retry_after)
    parser.add_argument(
        "--throttle-log-size", type=at_least(1, int), default=DEFAULT_LOG_SIZE, help="arrivals kept"
    )
    args = parser.parse_args(argv)
    misplaced = [
        flag
        for flag, value, modes in (
            ("--shops", args.shops, ("woo-fleet",)),
            ("--databases", args.databases, ("odoo-fleet",)),
            ("--latency-ms", args.latency_ms, FLEETS),
            ("--prefix", args.prefix, FLEETS),
        )
        if value is not None and args.upstream not in modes
    ]
    if misplaced:
        parser.error(f"{', '.join(misplaced)} does not apply to {args.upstream}")
    fleet = args.upstream in FLEETS
    args.size = args.size if args.size is not None else (DEFAULT_SIZE if fleet else SINGLE_SIZE)
    args.shops, args.databases, args.latency_ms = args.shops or 2, args.databases or 2, args.latency_ms or 0.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        built = build(args)
    except FaultSpecError as exc:
        print(f"python -m worker.sandbox: {exc}", file=sys.stderr)
        return 2
    with built as served:
        # The credentials are fake and exist only in this process: printing them is the point.
        if isinstance(served, Fleet):
            print("\n".join(describe_fleet(served)), flush=True)
            print(
                f"# {len(served)} tenants on {served.server.url_of('<name>')}; "
                f"faults: POST <url>{CONTROL_PATH}, edits: POST <url>{EDIT_PATH}, "
                f"host throttle: {served.server.url_of('').rstrip('/')}{THROTTLE_PATH}",
                file=sys.stderr,
                flush=True,
            )
        else:
            print("\n".join(describe(served)), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
