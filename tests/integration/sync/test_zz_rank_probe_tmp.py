from typing import Any
import pytest
from sqlalchemy import Engine
from sync_sim_mirror import table_rows
from models import Supplier
from worker.sandbox import OdooSimulator
from worker.sync import SyncSource, run_sync
pytestmark = pytest.mark.integration

def test_probe(odoo_deps: Any, clean_pg: Engine) -> None:
    with OdooSimulator(seed=3, size=60) as sim:
        deps = odoo_deps(sim, sync_overlap_seconds=2, odoo_page_size=7)
        s = lambda full: run_sync(SyncSource.ODOO_SUPPLIERS, deps, full=full, task_id=None, should_stop=lambda: False)
        s(True)
        pid = sorted(p["id"] for p in sim.catalog.suppliers())[0]
        old = sim.catalog.get(pid)["supplier_rank"]
        sim.catalog.change(pid, supplier_rank=0)
        sim.skew += __import__("datetime").timedelta(seconds=10)
        s(False)
        sim.catalog.make_supplier(pid)
        import time; time.sleep(3)
        s(False)
        row = table_rows(clean_pg, Supplier, "odoo_id")[pid]
        print("old", old, "mirror", row["supplier_rank"], "upstream", sim.catalog.get(pid)["supplier_rank"])
        assert row["supplier_rank"] == sim.catalog.get(pid)["supplier_rank"]
