"""Per-process task dependencies: composed per source, cached, rebuilt after a reset."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from worker.celeryapp import deps
from worker.kinds.odoo.client import OdooClient
from worker.kinds.woocommerce.client import WooCommerceClient
from worker.sources.config import SourceConfig
from worker.sync import SyncDeps, SyncSource

KEYS: dict[str, Any] = {"consumer_key": "ck_0123456789", "consumer_secret": "cs_0123456789"}
CONFIGURED = {
    "woocommerce_url": "http://127.0.0.1:9",
    "woocommerce_consumer_key": "ck_12345678",
    "woocommerce_consumer_secret": "cs_12345678",
    "odoo_url": "http://127.0.0.1:9",
    "odoo_db": "db",
    "odoo_username": "admin",
    "odoo_api_key": "0123456789abcdef",
}


@pytest.fixture
def configured(settings_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings = settings_factory(**CONFIGURED)
    monkeypatch.setattr(deps, "_load_settings", lambda: settings)
    deps.reset()
    yield
    if deps.get_engine.cache_info().currsize:
        deps.get_engine().dispose()
    deps.reset()


@pytest.mark.parametrize(
    ("source", "client_type", "breaker"),
    [
        (SyncSource.WOOCOMMERCE_PRODUCTS, WooCommerceClient, "woocommerce:woocommerce-products"),
        (SyncSource.ODOO_SUPPLIERS, OdooClient, "odoo:odoo-suppliers"),
    ],
    ids=["woocommerce", "odoo"],
)
def test_each_source_gets_its_own_client_and_breaker(
    configured: None, source: SyncSource, client_type: type, breaker: str
) -> None:
    built = deps.get_deps(source)
    assert isinstance(built, SyncDeps)
    assert isinstance(built.client, client_type)
    assert built.breaker.name == breaker
    assert built.event_log is deps.get_event_log()
    assert built.redis is deps.get_redis()


def test_built_once_per_process_until_reset(configured: None) -> None:
    first = deps.get_deps(SyncSource.WOOCOMMERCE_PRODUCTS)
    assert deps.get_deps(SyncSource.WOOCOMMERCE_PRODUCTS) is first
    assert deps.get_deps(SyncSource.ODOO_SUPPLIERS).session_factory is first.session_factory
    deps.reset()
    assert deps.get_deps(SyncSource.WOOCOMMERCE_PRODUCTS) is not first


def test_a_forked_child_starts_without_the_parents_connections() -> None:
    # In a fresh interpreter: prefork children must never reuse the parent's sockets.
    code = (
        "import os, sys\n"
        "from worker.celeryapp import deps\n"
        "deps.get_redis(); deps.get_engine()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sizes = (deps.get_redis.cache_info().currsize, deps.get_engine.cache_info().currsize)\n"
        "    os._exit(0 if sizes == (0, 0) else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert deps.get_redis.cache_info().currsize == 1, 'parent lost its client'\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ODOO_", "WOOCOMMERCE_"))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_stored_source_over_plain_http_to_a_remote_host_is_never_called(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written before the rule existed, or while ALLOW_INSECURE_HTTP was set: its secrets stay home.
    stored = SourceConfig(name="shop-plain", kind="woocommerce", url="http://shop-plain.shops.test",
                          credentials=KEYS)  # fmt: skip
    monkeypatch.setattr(deps, "find_source", lambda *_: stored)
    with pytest.raises(deps.SourceMisconfigured, match=r"plain http to shop-plain\.shops\.test"):
        deps.get_deps("shop-plain")


def test_sources_on_one_host_share_its_budget_and_a_contradictory_override_is_refused(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    shops = {
        name: SourceConfig(
            name=name, kind="woocommerce", url=f"http://127.0.0.1:9/{name}", credentials=KEYS, budget=budget
        )
        for name, budget in (("shop-a", {}), ("shop-b", {"ceiling": 8}), ("shop-c", {"floor": 40}))
    }
    monkeypatch.setattr(deps, "find_source", lambda _settings, _sessions, name, **_: shops[name])
    a, b = deps.get_deps("shop-a").breaker, deps.get_deps("shop-b").breaker
    assert a.budget is not None and b.budget is not None
    assert a.budget.key == b.budget.key and a.budget_host == "127.0.0.1:9"
    assert (a.budget.policy.ceiling, b.budget.policy.ceiling) == (25.0, 8.0)
    # A floor above the kind's ceiling (25/s) would make every refusal a breaker failure.
    with pytest.raises(deps.SourceMisconfigured, match="budget floor 40 is above its ceiling 25"):
        deps.get_deps("shop-c")


def test_a_worker_keeps_at_most_source_cache_size_sources(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_factory(source_cache_size=2)
    monkeypatch.setattr(deps, "_load_settings", lambda: settings)
    deps.reset()
    shops = {
        f"shop-{i}": SourceConfig(name=f"shop-{i}", kind="woocommerce", url=f"http://127.0.0.1:{9000 + i}",
                                  credentials=KEYS)
        for i in range(5)
    }  # fmt: skip
    monkeypatch.setattr(deps, "find_source", lambda _s, _f, name: shops[name])
    closed: list[Any] = []
    monkeypatch.setattr(requests.Session, "close", lambda session: closed.append(session))
    built = [deps.get_deps(name) for name in shops]
    assert len(deps._deps_cache()) == 2  # memory flat in the number of sources
    assert deps.get_deps("shop-4") is built[4]  # the most recent stay cached
    assert deps.get_deps("shop-0") is not built[0]  # the oldest was dropped, and is built again
    assert built[0].client._transport.session in closed  # ...its HTTP pool closed
    assert built[4].client._transport.session not in closed
    deps.reset()
