"""Benchmark: fetch a WooCommerce catalog from the simulator, sequential vs concurrent paging.

Each variant runs in a fresh interpreter (so its peak RSS is its own) against a simulator running in
its own process (so the simulator's CPU is not charged to the client, nor its GIL shared).

    .venv/bin/python bench/fetch_catalog.py --size 100000 --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Upstream fetch"


class NullEventLog:
    """Failures are not expected here; a failed run shows up as an exception, not as rows."""

    def record(self, event_type: str, **kwargs: Any) -> None:
        print(f"unexpected failure event {event_type}: {kwargs.get('payload')}", file=sys.stderr)


def child(args: argparse.Namespace) -> None:
    """One measured fetch; prints one JSON line."""
    sys.path.insert(0, str(ROOT))
    from worker.breaker import build_breaker
    from worker.infra.settings import load_settings
    from worker.kinds.woocommerce.client import WooCommerceClient
    from worker.upstream import build_retrying

    settings = load_settings(
        _env_file=None,
        woocommerce_url=args.url,
        woocommerce_consumer_key=args.key,
        woocommerce_consumer_secret=args.secret,
        woocommerce_page_concurrency=args.concurrency,
    )
    log = NullEventLog()
    # The in-process breaker store (no Redis): the benchmark must not touch a shared Redis.
    breaker = build_breaker("woocommerce", settings, None, log)
    client = WooCommerceClient(settings, breaker, log, build_retrying(settings))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pages = records = 0
    started = time.perf_counter()
    for page in client.iter_product_pages(status="any"):
        pages += 1
        records += len(page.records)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "pages": pages,
        "records": records,
        "seconds": elapsed,
        "rss_before_kb": rss_before,
        "rss_peak_kb": peak,
    }
    print(json.dumps(result))


class Simulator:
    """``python -m worker.sandbox woocommerce`` in a subprocess, with its printed credentials."""

    def __init__(self, size: int) -> None:
        cmd = [sys.executable, "-m", "worker.sandbox", "woocommerce", "--size", str(size), "--port", "0"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.env: dict[str, str] = {}
        assert self.proc.stdout is not None
        while "WOOCOMMERCE_CONSUMER_SECRET" not in self.env:
            line = self.proc.stdout.readline()
            if not line:
                msg = "simulator exited before printing its settings"
                raise RuntimeError(msg)
            if "=" in line and not line.startswith("#"):
                name, _, value = line.strip().partition("=")
                self.env[name] = value

    def set_latency(self, ms: float) -> None:
        body = json.dumps({"latency_ms": ms}).encode() if ms else None
        method = "POST" if ms else "DELETE"
        req = urllib.request.Request(self.env["WOOCOMMERCE_URL"] + "/__faults__", data=body, method=method)
        urllib.request.urlopen(req, timeout=10).read()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_variant(sim: Simulator, concurrency: int) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--child", "--url", sim.env["WOOCOMMERCE_URL"],
        "--key", sim.env["WOOCOMMERCE_CONSUMER_KEY"], "--secret", sim.env["WOOCOMMERCE_CONSUMER_SECRET"],
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(size: int, latencies: list[float], concurrency: int) -> list[dict[str, Any]]:
    rows = []
    sim = Simulator(size)
    try:
        for latency in latencies:
            sim.set_latency(latency)
            for label, workers in (("sequential", 1), (f"concurrent ({concurrency})", concurrency)):
                r = run_variant(sim, workers)
                r.update(size=size, latency_ms=latency, mode=label, pages_per_s=r["pages"] / r["seconds"])
                print(
                    f"size={size} latency={latency:g}ms {label}: {r['pages']} pages in {r['seconds']:.1f}s "
                    f"= {r['pages_per_s']:.1f} pages/s, peak RSS {r['rss_peak_kb'] / 1024:.0f} MiB",
                    flush=True,
                )
                rows.append(r)
    finally:
        sim.close()
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        SECTION,
        "",
        "What it measures: `WooCommerceClient.iter_product_pages()` reading a whole catalog from the "
        "WooCommerce simulator (a separate process) through the real retry policy and breaker "
        "(in-process store), `per_page=100`; sequential is `WOOCOMMERCE_PAGE_CONCURRENCY=1`. "
        "Each variant runs in a fresh interpreter; peak RSS is that process's `ru_maxrss`, "
        '"before" is the RSS after imports and client construction, before the first request.',
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}; "
        "the simulator is single-process Python and shares the machine's cores with the client.",
        "",
        "| catalog | added latency | paging | pages | seconds | pages/s | vs sequential "
        "| RSS before | peak RSS |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    baseline: dict[tuple[int, float], float] = {}
    for r in rows:
        key = (r["size"], r["latency_ms"])
        baseline.setdefault(key, r["pages_per_s"])
        lines.append(
            f"| {r['size']:,} | {r['latency_ms']:g} ms | {r['mode']} | {r['pages']} | {r['seconds']:.1f} | "
            f"{r['pages_per_s']:.1f} | {r['pages_per_s'] / baseline[key]:.2f}x | "
            f"{r['rss_before_kb'] / 1024:.0f} MiB | {r['rss_peak_kb'] / 1024:.0f} MiB |"
        )
    lines += [
        "",
        "Reading it: the simulator renders each page in Python (tens of ms for 100 products), so at "
        "0 ms it is the bottleneck and concurrency buys only what overlapping its work with the "
        "client's parsing gives; with latency added the waits overlap and concurrency pays. The real "
        "gain against a remote store grows with its latency, up to the concurrency setting. Peak RSS "
        "is the same for 10k and 100k products: pages are yielded and dropped, never accumulated, and "
        "at most `concurrency` pages are held ahead of the consumer. Numbers are from a shared, busy "
        "2-core machine; compare the ratios, not the absolute rates.",
        "",
        f"Reproduce: `{command}`",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section (or append it), leaving every other section alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument(
        "--flat-size", type=int, default=10_000, help="a smaller catalog, to show memory is flat"
    )
    parser.add_argument("--latencies", default="0,50", help="added latency per request, ms")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--write", type=Path, help="replace the '## Upstream fetch' section of this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    latencies = [float(x) for x in args.latencies.split(",")]
    rows = measure(args.size, latencies, args.concurrency)
    if args.flat_size:
        rows += measure(args.flat_size, [0.0], args.concurrency)
    command = ".venv/bin/python bench/fetch_catalog.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--write") and a != str(args.write)
    )
    section = markdown(rows, command.strip() + (" --write docs/BENCHMARKS.md" if args.write else ""))
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
