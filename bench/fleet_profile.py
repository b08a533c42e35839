"""Where a worker's CPU goes: ``py-spy record`` of one worker node (main process and its pool children).

py-spy samples from outside the process (no instrumentation in the worker); ``--format raw`` writes one
line per distinct stack, ``frame;frame;... count``. Idle samples are left out (``py-spy`` records only
threads that are running), so shares are of the CPU the node actually used.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

# "function (path/to/module.py:line)": the line number is dropped so a function counts once.
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def record(py_spy: str, pid: int, seconds: int, out: Path, rate: int = 50) -> subprocess.Popen[bytes]:
    cmd = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds),
           "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frame(text: str) -> str:
    match = FRAME.match(text.strip())
    if match is None:
        return text.strip()
    module = match["file"]
    for marker in ("site-packages/", "/worker/", "/tasks/", "/lib/python3"):
        if marker in module:
            module = (
                module.split(marker, 1)[1]
                if marker != "/lib/python3"
                else "stdlib:" + module.rsplit("/", 1)[-1]
            )
            if marker in ("/worker/", "/tasks/"):
                module = marker.strip("/") + "/" + module
            break
    return f"{match['func']} ({module})"


def summarise(raw: Path, top: int = 30) -> dict[str, object]:
    """Inclusive and self shares of the sampled CPU, by function."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        # The first frames are the process and thread names py-spy puts on top.
        frames = [f for f in frames if "(" in f]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count

    def share(count: int) -> float:
        return round(100 * count / total, 1) if total else 0.0

    return {
        "samples": total,
        "inclusive": [(name, share(c)) for name, c in inclusive.most_common(top * 3)],
        "self": [(name, share(c)) for name, c in own.most_common(top)],
    }
