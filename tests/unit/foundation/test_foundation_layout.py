"""What production processes import: never the simulators or the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_worker_beat_and_tasks_never_import_the_simulators_or_the_demo(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import worker\n"
        "worker.app\n"
        "import tasks.sync, tasks.maintenance\n"
        "from worker.celeryapp import deps, scheduler\n"
        "from worker.kinds import all_kinds\n"
        "all_kinds()\n"
        "import worker.cli.sync, worker.cli.sources, worker.cli.run\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('worker.sandbox', 'worker.demo')))\n"
        "assert not bad, bad\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ODOO_", "WOOCOMMERCE_"))}
    env["EVENT_SPOOL_PATH"] = str(tmp_path / "events.spool")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
