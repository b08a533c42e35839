"""``python -m worker.sandbox`` runs a simulator in the foreground and prints how to reach it."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import requests


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.sandbox", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    settings: dict[str, str] = {}
    for line in proc.stdout:
        if line.startswith("# faults"):
            break
        name, sep, value = line.strip().partition("=")
        if sep:
            settings[name] = value
    return proc, settings


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    if proc.stdout is not None:
        proc.stdout.close()


def test_woocommerce_from_the_command_line() -> None:
    proc, settings = start("woocommerce", "--size", "30", "--seed", "2")
    try:
        response = requests.get(
            settings["WOOCOMMERCE_URL"] + "/wp-json/wc/v3/products",
            auth=(settings["WOOCOMMERCE_CONSUMER_KEY"], settings["WOOCOMMERCE_CONSUMER_SECRET"]),
            params={"per_page": 100, "status": "any"},
            timeout=10,
        )
        assert response.status_code == 200 and 0 < len(response.json()) <= 30
    finally:
        stop(proc)


def test_odoo_from_the_command_line() -> None:
    proc, settings = start("odoo", "--size", "20", "--odoo-version", "19.0")
    try:
        response = requests.post(
            settings["ODOO_URL"] + "/json/2/res.partner/search_count",
            headers={"Authorization": f"bearer {settings['ODOO_API_KEY']}"},
            json={"domain": [], "context": {"active_test": False}},
            timeout=10,
        )
        assert response.status_code == 200 and response.json() == 20
    finally:
        stop(proc)
