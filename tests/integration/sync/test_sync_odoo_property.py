"""The whole promise, as a property: whatever an Odoo database does, the suppliers mirror converges to it.

A hypothesis state machine interleaves upstream activity on the Odoo simulator (create a supplier or
a plain partner, edit, one mass ``write`` on several suppliers, archive, unarchive, drop
``supplier_rank`` to 0, raise it back by raw SQL without touching ``write_date``, hard delete, and a
long transaction whose rows commit stamped a little in the past) with incremental and full runs into
PostgreSQL -- and with activity landing *between the requests* of a running sync (pages, the id
scan, the reads of ids it reveals). The database's clock is skewed by hours in either direction for
a whole example. Once upstream goes quiet:

- one incremental run mirrors every current supplier exactly, except what only a full run can see
  (partners no longer suppliers are not marked, and a many2one's display name that changed because
  the *other* partner was renamed does not move the row's ``write_date``);
- one full run then leaves the mirror equal to upstream, deletions included;
- a following no-op run of either kind rewrites zero rows.

``SYNCWORKER_PROPERTY_EXAMPLES=2000`` runs a long profile (a few thousand examples take an hour here).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from property_profile import property_settings
from sqlalchemy import Engine, text
from sync_sim_mirror import assert_odoo_mirror, table_rows, versions

from models import Supplier
from worker.kinds.odoo.client import WANTED_FIELDS
from worker.kinds.odoo.values import many2one_id, parse_odoo_datetime
from worker.sandbox import OdooSimulator
from worker.sandbox.wire import Request
from worker.sync import RunStatus, SyncDeps, SyncSource, run_sync

pytestmark = pytest.mark.integration
ODOO = SyncSource.ODOO_SUPPLIERS
FIELDS = set(WANTED_FIELDS)
# The longest a "long transaction" stamps its rows before they commit (write_date = transaction start).
LONG_TRANSACTION_SECONDS = 2
# Many2one fields whose display name is the *other* partner's: it changes without this row's write.
PARTNER_LINKS = ("parent_id", "commercial_partner_id")


def _partners(sim: OdooSimulator, pick: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return sorted((p for p in sim.catalog.iter_partners() if pick(p)), key=lambda p: p["id"])


def _suppliers(
    sim: OdooSimulator, pick: Callable[[dict[str, Any]], bool] = lambda p: True
) -> list[dict[str, Any]]:
    return _partners(sim, lambda p: p["supplier_rank"] > 0 and pick(p))


def create(sim: OdooSimulator, rnd: random.Random) -> None:
    companies = _partners(sim, lambda p: p["is_company"])
    is_company = rnd.random() < 0.5 or not companies
    parent = 0 if is_company or rnd.random() < 0.5 else rnd.choice(companies)["id"]
    sim.catalog.create_partner(
        name=f"Vendor {rnd.randrange(10**6)}", is_company=is_company, parent_id=parent,
        supplier_rank=rnd.randint(1, 5),
    )  # fmt: skip


def create_non_supplier(sim: OdooSimulator, rnd: random.Random) -> None:
    sim.catalog.create_partner(name=f"Customer {rnd.randrange(10**6)}", supplier_rank=0)


def edit(sim: OdooSimulator, rnd: random.Random) -> None:
    suppliers = _suppliers(sim)
    if suppliers:
        fields: dict[str, Any] = {
            "email": f"e{rnd.randrange(10**6)}@vendor.test",
            "city": rnd.choice(["Gent", False]),
        }
        if rnd.random() < 0.5:  # a rename also changes the display names its children render
            fields["name"] = f"Renamed {rnd.randrange(10**6)}"
        sim.catalog.change(rnd.choice(suppliers)["id"], **fields)


def mass_edit(sim: OdooSimulator, rnd: random.Random) -> None:
    suppliers = _suppliers(sim)
    if len(suppliers) > 1:
        chosen = rnd.sample(suppliers, min(len(suppliers), rnd.randint(2, 12)))
        sim.catalog.write_many([p["id"] for p in chosen], city=f"Mass {rnd.randrange(10**6)}")


def archive(sim: OdooSimulator, rnd: random.Random) -> None:
    suppliers = _suppliers(sim, lambda p: p["active"])
    if suppliers:
        sim.catalog.archive(rnd.choice(suppliers)["id"])


def unarchive(sim: OdooSimulator, rnd: random.Random) -> None:
    suppliers = _suppliers(sim, lambda p: not p["active"])
    if suppliers:
        sim.catalog.unarchive(rnd.choice(suppliers)["id"])


def rank_to_zero(sim: OdooSimulator, rnd: random.Random) -> None:
    suppliers = _suppliers(sim)
    if len(suppliers) > 1:
        sim.catalog.change(rnd.choice(suppliers)["id"], supplier_rank=0)


def rank_back(sim: OdooSimulator, rnd: random.Random) -> None:
    """A vendor bill: raw SQL raises ``supplier_rank`` and leaves ``write_date`` alone."""
    plain = _partners(sim, lambda p: p["supplier_rank"] == 0)
    # Mostly suppliers dropped in this example (written since, not created as customers here).
    dropped = [p for p in plain if p["write_date"] > "2026" and not str(p["name"]).startswith("Customer")]
    pool = dropped if dropped and rnd.random() < 0.7 else plain
    if pool:
        sim.catalog.make_supplier(rnd.choice(pool)["id"])


def force_delete(sim: OdooSimulator, rnd: random.Random) -> None:
    # Partners with contacts are left alone: unlinking a parent rewrites its children by SQL.
    parents = {many2one_id(p["parent_id"]) for p in sim.catalog.iter_partners()}
    partners = _partners(sim, lambda p: p["id"] not in parents)
    if len(partners) > 1:
        sim.catalog.delete(rnd.choice(partners)["id"])


def long_transaction(sim: OdooSimulator, rnd: random.Random) -> None:
    """A write that commits now, stamped when its transaction began, up to the overlap ago."""
    suppliers = _suppliers(sim)
    if suppliers:
        with sim.catalog.lock:
            pid = rnd.choice(suppliers)["id"]
            sim.catalog.change(pid, phone=f"+32 {rnd.randrange(10**8)}")
            started = sim.now() - dt.timedelta(seconds=rnd.uniform(0.0, LONG_TRANSACTION_SECONDS))
            sim.catalog.set_write_date(pid, started)


MUTATIONS: dict[str, Callable[[OdooSimulator, random.Random], None]] = {
    f.__name__: f
    for f in (
        create, create_non_supplier, edit, mass_edit, archive, unarchive, rank_to_zero, rank_back,
        force_delete, long_transaction,
    )
}  # fmt: skip
seen_kinds: set[str] = set()


def snapshot(sim: OdooSimulator) -> str:
    return json.dumps(list(sim.catalog.iter_partners()), sort_keys=True, default=str)


def supplier_mismatches(row: dict[str, Any] | None, partner: dict[str, Any]) -> list[str]:
    """How a mirror row differs from a current supplier, over what an incremental run guarantees.

    A partner's many2one to another partner renders that partner's display name, which a rename of
    the other one changes without writing this one: only a full run re-reads it. Its id must match.
    """
    if row is None:
        return ["missing"]
    raw = {k: v for k, v in partner.items() if k in FIELDS or k == "id"}
    expected = {
        "raw": {k: many2one_id(v) if k in PARTNER_LINKS else v for k, v in raw.items()},
        "name": partner["name"],
        "email": partner["email"] or None,
        "city": partner["city"] or None,
        "active": partner["active"],
        "is_company": partner["is_company"],
        "supplier_rank": partner["supplier_rank"],
        "state_name": partner["state_id"][1] if partner["state_id"] else None,
        "parent_odoo_id": many2one_id(partner["parent_id"]),
        "odoo_write_date": parse_odoo_datetime(partner["write_date"]),
        "deleted_at": None,
    }
    actual = {**row, "raw": {k: many2one_id(v) if k in PARTNER_LINKS else v for k, v in row["raw"].items()}}
    return [f"{k}: {actual[k]!r} != {v!r}" for k, v in expected.items() if actual[k] != v]


class OdooMirror(RuleBasedStateMachine):
    """One Odoo database, one mirror; ``make_deps`` and ``engine`` are set by the test before it runs."""

    make_deps: Callable[..., SyncDeps]
    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        self.sim: OdooSimulator | None = None

    @initialize(seed=st.integers(0, 10**6), skew_hours=st.sampled_from([-5, 0, 3]))
    def start(self, seed: int, skew_hours: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE suppliers, event_log, sync_state, sync_runs RESTART IDENTITY"))
        self.sim = OdooSimulator(seed=seed, size=60, version="17.0").start()
        self.sim.skew = dt.timedelta(hours=skew_hours)
        seen_kinds.add(f"skew {skew_hours:+d}h")
        # The simulator stamps write_date when the write happens, so a plain write lands after the
        # watermark (the Date header answering the pass's first request, truncated down to the
        # second) and no overlap would be needed. A long transaction commits rows stamped up to
        # LONG_TRANSACTION_SECONDS before the commit: that is exactly the overlap it needs. Runs here
        # are seconds apart: the production overlap (minutes) would re-read everything and hide any
        # watermark error.
        self.deps = self.make_deps(self.sim, sync_overlap_seconds=LONG_TRANSACTION_SECONDS, odoo_page_size=7)

    @property
    def simulator(self) -> OdooSimulator:
        assert self.sim is not None
        return self.sim

    def _sync(self, *, full: bool) -> Any:
        result = run_sync(ODOO, self.deps, full=full, task_id=None, should_stop=lambda: False)
        assert result.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL), result.error
        return result

    @rule(kind=st.sampled_from(sorted(MUTATIONS)), seed=st.integers(0, 10**6))
    def upstream_activity(self, kind: str, seed: int) -> None:
        before = snapshot(self.simulator)
        MUTATIONS[kind](self.simulator, random.Random(seed))
        if snapshot(self.simulator) != before:  # counted only when it changed something
            seen_kinds.add(kind)

    @rule(seconds=st.integers(1, 30))
    def time_passes(self, seconds: int) -> None:
        """The upstream's clock moves on: an example runs in about a second of real time, well inside
        the overlap, which would otherwise re-read every write of the example and hide watermark errors."""
        self.simulator.skew += dt.timedelta(seconds=seconds)
        seen_kinds.add("time passes")

    @rule(full=st.booleans())
    def sync(self, full: bool) -> None:
        self._sync(full=full)

    @rule(
        full=st.booleans(),
        kinds=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
        at_request=st.integers(1, 12),
        seed=st.integers(0, 10**6),
    )
    def sync_while_upstream_changes(self, full: bool, kinds: list[str], at_request: int, seed: int) -> None:
        """Activity lands between two requests of the running sync (pages, the id scan, id reads)."""
        sim = self.simulator
        count = 0
        lock = threading.Lock()
        rnd = random.Random(seed)

        def hook(request: Request) -> None:
            nonlocal count
            with lock:
                count += 1
                if count == at_request:
                    for kind in kinds:
                        MUTATIONS[kind](sim, rnd)

        sim.before_request = hook
        try:
            self._sync(full=full)
        finally:
            sim.before_request = None
        if count >= at_request:
            seen_kinds.add("during paging")

    @rule(full=st.booleans(), seed=st.integers(0, 10**6))
    def sync_with_a_malformed_record(self, full: bool, seed: int) -> None:
        """A write leaves one supplier unreadable (a text field as a number) for one run.

        The run ends partial, the supplier's row is left exactly as it was (not tombstoned, not
        overwritten), and the write that repairs it is mirrored afterwards.
        """
        suppliers = _suppliers(self.simulator)
        if not suppliers:
            return
        rnd = random.Random(seed)
        pid = rnd.choice(suppliers)["id"]
        before = table_rows(self.engine, Supplier, "odoo_id").get(pid)
        self.simulator.catalog.change(pid, name=rnd.randrange(1, 10**6))
        try:
            result = self._sync(full=full)
        finally:
            self.simulator.catalog.change(pid, name=f"Repaired {rnd.randrange(10**6)}")
        assert result.status is RunStatus.PARTIAL
        assert table_rows(self.engine, Supplier, "odoo_id").get(pid) == before
        seen_kinds.add("malformed record")

    def teardown(self) -> None:
        if self.sim is None:
            return
        try:
            self.sim.before_request = None
            self._sync(full=False)
            mirror = table_rows(self.engine, Supplier, "odoo_id")
            stale = {
                p["id"]: bad
                for p in self.sim.catalog.suppliers()
                if (bad := supplier_mismatches(mirror.get(p["id"]), p))
            }
            assert stale == {}, "the quiet incremental run left suppliers behind"
            self._sync(full=True)
            assert_odoo_mirror(self.engine, self.sim.catalog, FIELDS)
            before = versions(self.engine, "suppliers")
            for full in (False, True):
                assert self._sync(full=full).counts.written == 0
            assert versions(self.engine, "suppliers") == before
        finally:
            self.sim.stop()


def test_the_mirror_converges_to_the_odoo_database_whatever_it_does(odoo_deps: Any, clean_pg: Engine) -> None:
    seen_kinds.clear()
    OdooMirror.make_deps = staticmethod(odoo_deps)  # type: ignore[assignment]
    OdooMirror.engine = clean_pg
    run_state_machine_as_test(
        OdooMirror,
        settings=property_settings(),
    )
    # Every kind of activity was exercised at least once in this run, not just drawn as possible.
    assert set(MUTATIONS) | {"during paging", "malformed record", "time passes"} <= seen_kinds
