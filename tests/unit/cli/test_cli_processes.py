"""The supervisor signals each child's main pid only, and escalates only when a child ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from worker.cli.supervisor import Supervisor

# A parent that reports SIGTERM in a file and exits, with a grandchild in its process group.
PARENT = """
import signal, subprocess, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
out.write_text(f"started {kid.pid}\\n")
def term(signum, frame):
    with out.open("a") as f:
        f.write("got SIGTERM\\n")
    kid.terminate(); kid.wait(); sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(0.05)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def wait_for_text(path: Path, text: str) -> str:
    for _ in range(200):
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_children_get_their_own_session_and_a_warm_stop(tmp_path: Path) -> None:
    sup = Supervisor()
    report = tmp_path / "report"
    child = sup.start("parent", [sys.executable, "-c", PARENT, str(report)], env=dict(os.environ))
    grandchild = int(wait_for_text(report, "started").split()[1])
    assert os.getsid(child.pid) == child.pid != os.getsid(0)

    sup.stop_all(timeout=10)

    assert "got SIGTERM" in report.read_text()
    assert child.process.returncode == 0
    assert not alive(grandchild)


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    sup = Supervisor()
    log = tmp_path / "stubborn.log"
    child = sup.start("stubborn", [sys.executable, "-c", STUBBORN], env=dict(os.environ), log_path=log)
    wait_for_text(log, "ready")
    sup.stop_all(timeout=0.5)
    assert child.process.returncode == -signal.SIGKILL


def test_first_exit_pidfile_and_exit_code(tmp_path: Path) -> None:
    sup = Supervisor()
    sup.start("ok", [sys.executable, "-c", "pass"], env=dict(os.environ))
    failing = sup.start("bad", [sys.executable, "-c", "raise SystemExit(7)"], env=dict(os.environ))
    assert sup.wait_all(timeout=20)
    assert sup.first_exit() is not None
    assert sup.exit_code() == 7
    sup.write_pidfile(tmp_path / "pids")
    assert f"bad {failing.pid}" in (tmp_path / "pids").read_text()
