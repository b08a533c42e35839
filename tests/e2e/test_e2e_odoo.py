"""Odoo suppliers through a worker that consumes only the ``odoo`` queue."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from celery import Celery
from e2e_harness import (
    REPO_ROOT,
    Stack,
    enqueue,
    expected_suppliers,
    mirrored_suppliers,
    runs,
    supplier_mismatches,
)
from sqlalchemy import Engine

from worker.sandbox.odoo import OdooSimulator

pytestmark = pytest.mark.e2e
ODOO = "odoo-suppliers"


def test_full_then_incremental_then_noop(
    stack: Stack, odoo: OdooSimulator, db: Engine, client_app: Celery
) -> None:
    stack.worker()
    full = enqueue(client_app, ODOO, full=True).get(timeout=120)
    assert full["status"] == "succeeded", full
    assert supplier_mismatches(expected_suppliers(odoo.catalog), mirrored_suppliers(db)) == []
    assert full["counts"]["inserted"] == len(expected_suppliers(odoo.catalog))

    ids = sorted(expected_suppliers(odoo.catalog))
    created = odoo.catalog.create_partner(name="New Supplier SA", is_company=True, supplier_rank=1)
    odoo.catalog.change(ids[0], email="orders@changed.test")
    odoo.catalog.archive(ids[1])
    time.sleep(1.1)  # write_date has one-second resolution; the next run starts after it

    inc = enqueue(client_app, ODOO, full=False).get(timeout=120)
    assert inc["status"] == "succeeded", inc
    assert supplier_mismatches(expected_suppliers(odoo.catalog), mirrored_suppliers(db)) == []
    assert (inc["counts"]["inserted"], inc["counts"]["updated"]) == (1, 2)
    assert mirrored_suppliers(db)[created["id"]]["name"] == "New Supplier SA"
    assert mirrored_suppliers(db)[ids[1]]["active"] is False

    # The Python entry point, as an operator's shell would use it: the module-level app, the env's config.
    code = "from tasks.odoo import sync_suppliers; print(sync_suppliers.delay().get(timeout=120)['run_id'])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    noop = client_app.AsyncResult(runs(db, ODOO)[-1]["task_id"]).get(timeout=10)
    assert noop["run_id"] == int(done.stdout.strip())
    assert noop["status"] == "succeeded"
    assert (noop["counts"]["inserted"], noop["counts"]["updated"], noop["counts"]["marked_deleted"]) == (
        0,
        0,
        0,
    )
    assert [r["mode"] for r in runs(db, ODOO)] == ["full", "incremental", "incremental"]
