"""Lag from upstream to mirror: edit one record per source per interval, watch PostgreSQL for it.

The driver edits through each tenant's ``POST <url>/__edit__`` (a control request: no added latency)
at a random time within every interval; the edit renames the record, so the new name in the
source's row of ``products`` / ``suppliers`` is the mirror catching up. The poller looks for every
pending edit once a second in one query: lag = the poll that first saw it - the moment before the
edit was sent, so it is rounded up by at most the poll period.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
import requests

POLL_SECONDS = 1.0
MIRROR_QUERY = {
    "woocommerce": (
        "SELECT p.source, p.woo_id, p.name FROM products p "
        "JOIN unnest(%s::text[], %s::bigint[]) AS t(s, i) ON p.source = t.s AND p.woo_id = t.i"
    ),
    "odoo": (
        "SELECT p.source, p.odoo_id, p.name FROM suppliers p "
        "JOIN unnest(%s::text[], %s::bigint[]) AS t(s, i) ON p.source = t.s AND p.odoo_id = t.i"
    ),
}


@dataclass
class Edit:
    source: str
    kind: str
    record_id: int
    name: str
    edited_at: float


@dataclass
class LagRecorder:
    """Runs the driver and the poller threads; ``lags`` is source -> seconds of each mirrored edit."""

    dsn: str
    sources: dict[str, dict[str, Any]]  # name -> {"kind", "url"}
    interval: float
    seed: int = 1
    lags: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    pending: dict[tuple[str, int], Edit] = field(default_factory=dict)
    edits_made: int = 0
    edit_errors: list[str] = field(default_factory=list)
    poll_queries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, windows: int, excluded: frozenset[str] = frozenset()) -> None:
        """Edit each source (but ``excluded``) once at a random moment of each of ``windows`` intervals."""
        rng = random.Random(self.seed)
        t0 = time.time()
        plan = sorted(
            (t0 + (k + rng.random()) * self.interval, name)
            for k in range(windows)
            for name in self.sources
            if name not in excluded
        )
        for target in (self._drive, self._poll):
            thread = threading.Thread(
                target=target, args=(plan,) if target == self._drive else (), daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def drained(self) -> bool:
        with self._lock:
            return not self.pending

    def _drive(self, plan: list[tuple[float, str]]) -> None:
        session = requests.Session()
        for when, name in plan:
            if self._stop.wait(max(0.0, when - time.time())):
                return
            source = self.sources[name]
            sent = time.time()
            try:
                answer = session.post(f"{source['url']}/__edit__", json={}, timeout=10)
                answer.raise_for_status()
                body = answer.json()
            except (requests.RequestException, ValueError) as exc:
                self.edit_errors.append(f"{name}: {type(exc).__name__}")
                continue
            edit = Edit(name, source["kind"], int(body["id"]), str(body["record"]["name"]), sent)
            with self._lock:
                # A source still behind on its previous edit: that one is superseded, and counted unseen.
                self.pending[(name, edit.record_id)] = edit
                self.edits_made += 1

    def _poll(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(POLL_SECONDS):
                with self._lock:
                    waiting = list(self.pending.values())
                if not waiting:
                    continue
                seen_at = time.time()
                for kind, query in MIRROR_QUERY.items():
                    mine = [e for e in waiting if e.kind == kind]
                    if not mine:
                        continue
                    rows = conn.execute(
                        query, ([e.source for e in mine], [e.record_id for e in mine])
                    ).fetchall()
                    self.poll_queries += 1
                    names = {(s, int(i)): n for s, i, n in rows}
                    with self._lock:
                        for edit in mine:
                            key = (edit.source, edit.record_id)
                            if names.get(key) == edit.name and self.pending.get(key) is edit:
                                del self.pending[key]
                                self.lags[edit.source].append(seen_at - edit.edited_at)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarise(lags: dict[str, list[float]], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Fleet-wide p50/p95/max and the distribution of per-source p95s (``skip``: sources left out)."""
    per_source = {s: v for s, v in lags.items() if v and s not in skip}
    everything = [x for v in per_source.values() for x in v]
    p95s = {s: percentile(v, 95) for s, v in per_source.items()}
    worst = max(p95s, key=lambda s: p95s[s]) if p95s else None
    return {
        "edits_mirrored": len(everything),
        "sources": len(per_source),
        "p50": percentile(everything, 50),
        "p95": percentile(everything, 95),
        "max": max(everything, default=float("nan")),
        "mean": statistics.fmean(everything) if everything else float("nan"),
        "per_source_p95_median": percentile(list(p95s.values()), 50),
        "per_source_p95_p95": percentile(list(p95s.values()), 95),
        "worst_source": worst,
        "worst_source_p95": p95s.get(worst) if worst else float("nan"),
        "worst_source_max": max(per_source[worst]) if worst else float("nan"),
    }
