"""Keys and sources the configured-sources tests share."""

from __future__ import annotations

from cryptography.fernet import Fernet

from worker.sources.config import SourceConfig

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
SHOP_KEY = "ck_shop-key-0123456789abcdef"
SHOP_SECRET = "cs_shop-secret-0123456789abcdef"


def shop(name: str = "shop-eu", **changes: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": name,
        "kind": "woocommerce",
        "url": f"https://{name}.shops.test",
        "options": {"auth": "basic"},
        "credentials": {"consumer_key": SHOP_KEY, "consumer_secret": SHOP_SECRET},
    }
    return SourceConfig.model_validate({**values, **changes})
