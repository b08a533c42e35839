"""`celery -A worker ...` with a bad configuration stops at start-up, naming every variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_celery_refuses_to_start_and_names_each_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WOOCOMMERCE_", "ODOO_"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "WOOCOMMERCE_URL": "http://shop.example.com",
        "WOOCOMMERCE_CONSUMER_KEY": "ck_canary_secret_value",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "worker"],
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "WOOCOMMERCE_CONSUMER_SECRET: is not set" in proc.stderr
    assert "WOOCOMMERCE_URL: shop.example.com is a documentation placeholder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ck_canary_secret_value" not in proc.stderr + proc.stdout
