"""The Procfile under honcho: it parses, and Flower answers only with basic auth and never runs without."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import requests
from ops_env import BIN, REPO, clean_env, free_port, wait_until


def honcho(*args: str, env: dict[str, str], **kwargs: Any) -> Any:
    argv = [str(BIN / "honcho"), "-f", str(REPO / "Procfile"), "-d", str(REPO), *args]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def test_procfile_passes_honchos_check() -> None:
    proc = honcho("check", env=clean_env())
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for name in ("release", "worker", "beat", "flower"):
        assert name in out


def test_flower_requires_basic_auth(redis_url: str, tmp_path: Any) -> None:
    port = free_port()
    env = clean_env(
        PORT=str(port),
        REDIS_URL=redis_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        FLOWER_BASIC_AUTH="ops:flower-test-pw",
    )
    proc = honcho("start", "flower", env=env)
    try:

        def answering() -> bool:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
            except requests.ConnectionError:
                return False
            return True

        wait_until(answering, 60, "Flower to listen")
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        wrong = requests.get(f"http://127.0.0.1:{port}/", timeout=5, auth=("ops", "nope"))
        assert wrong.status_code == 401
        ok = requests.get(f"http://127.0.0.1:{port}/", timeout=5, auth=("ops", "flower-test-pw"))
        assert ok.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "flower-test-pw" not in out


def test_flower_refuses_to_start_without_auth(redis_url: str) -> None:
    proc = honcho("start", "flower", env=clean_env(PORT=str(free_port()), REDIS_URL=redis_url))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "FLOWER_BASIC_AUTH must be set" in out
