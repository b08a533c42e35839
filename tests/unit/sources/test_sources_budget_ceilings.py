"""The configured ceiling of each host's request budget, as `syncworker budgets` and the metrics read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from source_samples import shop
from sqlalchemy.orm import Session

from worker.sources import store
from worker.sources.catalog import budget_ceilings, fleet_budget_ceilings
from worker.sources.config import SourceConfig
from worker.sources.secrets import CredentialCipher

ENV_SHOP = {
    "woocommerce_url": "https://env.shops.test",
    "woocommerce_consumer_key": "ck_0123456789abcdef",
    "woocommerce_consumer_secret": "cs_0123456789abcdef",
}


def erp(name: str = "erp-main", **changes: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": name, "kind": "odoo", "url": "https://erp.shops.test",
        "options": {"db": name, "username": "sync"}, "credentials": {"api_key": "odoo-key-0123456789"},
    }  # fmt: skip
    return SourceConfig.model_validate({**values, **changes})


FLEET = [
    # Two shops on one server share its budget, at the lower of their ceilings.
    shop("shop-a", url="https://shared.shops.test", budget={"ceiling": 8}),
    shop("shop-b", url="https://SHARED.shops.test:443/store"),
    # A source that turned its budget off adds no ceiling; one that is disabled never calls.
    shop("shop-c", url="https://shop-c.shops.test:8443", budget={"ceiling": 0}),
    shop("shop-d", enabled=False),
    erp(),
    erp("erp-other", budget={"ceiling": 12}),
]


def test_a_shared_host_gets_the_lowest_ceiling_and_hosts_without_a_budget_are_left_out(
    settings_factory: Any,
) -> None:
    settings = settings_factory()
    assert budget_ceilings(settings, FLEET) == {"shared.shops.test": 8.0, "erp.shops.test": 10.0}
    # A kind whose budget is off (ceiling 0) leaves its hosts out, but for a source's own ceiling.
    odoo_off = settings_factory(odoo_budget={"ceiling": 0})
    assert budget_ceilings(odoo_off, FLEET) == {"shared.shops.test": 8.0, "erp.shops.test": 12.0}
    assert budget_ceilings(odoo_off, [erp()]) == {}
    lowered = settings_factory(woocommerce_budget={"ceiling": 5})
    assert budget_ceilings(lowered, FLEET)["shared.shops.test"] == 5.0


def test_the_fleet_is_read_from_the_table_and_the_environment_without_opening_credentials(
    session: Session, cipher: CredentialCipher, tmp_path: Path, settings_factory: Any
) -> None:
    for source in FLEET:
        store.add(session, source, cipher)
    session.commit()
    # No SOURCES_ENCRYPTION_KEYS: the stored credentials stay sealed.
    settings = settings_factory(database_url=f"sqlite:///{tmp_path / 'sources.db'}", **ENV_SHOP)
    assert fleet_budget_ceilings(settings) == {
        "shared.shops.test": 8.0,
        "erp.shops.test": 10.0,
        "env.shops.test": 25.0,
    }


def test_with_the_database_away_the_environments_sources_still_count(settings_factory: Any) -> None:
    settings = settings_factory(database_url="postgresql://syncworker@127.0.0.1:1/syncworker", **ENV_SHOP)
    assert fleet_budget_ceilings(settings) == {"env.shops.test": 25.0}
