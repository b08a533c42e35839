"""WooCommerce REST v3 payloads, rendered on demand from (seed, id) and a few indexed facts.

Nothing here is stored: the same record renders byte-for-byte the same on every request, so a
100k catalog costs only its index. Mutations are overrides applied by the catalog afterwards.
"""

from __future__ import annotations

import random
import time
from typing import Any

from worker.sandbox.rng import record_rng

# The site's timezone: UTC-3 without daylight saving, like the documentation samples.
SITE_OFFSET = -3 * 3600
PRODUCT_SALT = 11
VARIATION_SALT = 12

ADJECTIVES = (
    "Premium", "Classic", "Organic", "Vintage", "Compact", "Deluxe", "Rustic", "Urban", "Eco",
    "Café", "Größe", "Žluté", "Søft", "Crème", "Élan",
)  # fmt: skip
NOUNS = (
    "Hoodie", "T-Shirt", "Beanie", "Mug", "Backpack", "Poster", "Lamp", "Kettle", "Notebook",
    "Sneakers", "日本茶", "Chá Verde", "Tasse", "Ручка", "Album 🎵",
)  # fmt: skip
CATEGORIES = (
    (9, "Clothing", "clothing"), (14, "T-shirts", "t-shirts"), (15, "Uncategorized", "uncategorized"),
    (16, "Accessories", "accessories"), (17, "Music", "music"), (18, "Décor", "decor"),
)  # fmt: skip
COLORS = ("Black", "Green", "Blue", "Red", "Azul", "Weiß")
SIZES = ("S", "M", "L", "XL")
META_KEYS = ("_wpcom_is_markdown", "_yoast_wpseo_title", "_supplier_ref", "_custom_badge", "_wc_gla_mpn")
PLUGIN_KEYS: tuple[tuple[str, Any], ...] = (
    ("jetpack_sharing_enabled", True),
    ("brands", [{"id": 31, "name": "Acme", "slug": "acme"}]),
    ("_wcpay_subscription_meta", {"interval": "month", "length": 0}),
    ("yoast_head_json", {"title": "Shop", "robots": {"index": "index"}}),
)
DESCRIPTION = "<p>Pellentesque habitant morbi tristique senectus et netus et malesuada fames.</p>\n"


def gmt(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def money(rng: random.Random) -> str:
    """Prices as WooCommerce stores them: strings with however many decimals the merchant typed."""
    style = rng.random()
    if style < 0.25:
        return str(rng.randint(1, 300))
    if style < 0.40:
        return f"{rng.randint(1, 99)}.{rng.randint(1, 9)}"
    if style < 0.42:
        return "0.01"
    return f"{rng.randint(0, 499)}.{rng.randint(0, 99):02d}"


def product_name(seed: int, product_id: int) -> str:
    rng = record_rng(seed, PRODUCT_SALT, product_id)
    return f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {product_id}"


def slugify(name: str) -> str:
    keep = "".join(c.lower() if c.isascii() and c.isalnum() else "-" for c in name)
    return "-".join(p for p in keep.split("-") if p) or "product"


def meta_data(rng: random.Random, first_id: int) -> list[dict[str, Any]]:
    """Plugin meta: keys repeat and values are any JSON type."""
    values: tuple[Any, ...] = ("yes", 1, 2.5, True, None, ["a", 1], {"nested": {"k": False}}, "")
    count = rng.choice((0, 0, 1, 2, 3, 4))
    keys = [rng.choice(META_KEYS) for _ in range(count)]
    return [{"id": first_id + i, "key": key, "value": rng.choice(values)} for i, key in enumerate(keys)]


def image(image_id: int, ts: int, offset: int, site: str) -> dict[str, Any]:
    return {
        "id": image_id,
        "date_created": gmt(ts + offset),
        "date_created_gmt": gmt(ts),
        "date_modified": gmt(ts + offset),
        "date_modified_gmt": gmt(ts),
        "src": f"{site}/wp-content/uploads/{gmt(ts)[:4]}/{image_id}.jpg",
        "name": "",
        "alt": "",
    }


def dates(created: int, modified: int, offset: int) -> dict[str, str]:
    return {
        "date_created": gmt(created + offset),
        "date_created_gmt": gmt(created),
        "date_modified": gmt(modified + offset),
        "date_modified_gmt": gmt(modified),
    }


def stock(rng: random.Random) -> tuple[bool, int | None, str]:
    """(manage_stock, stock_quantity, stock_status); quantities go negative on backorders."""
    if rng.random() < 0.3:
        qty = rng.randint(-5, 250)
        return True, qty, stock_status(qty)
    return False, None, rng.choice(("instock", "instock", "instock", "outofstock", "onbackorder"))


def stock_status(qty: int) -> str:
    return "instock" if qty > 0 else ("onbackorder" if qty < 0 else "outofstock")


def product_body(
    seed: int, product_id: int, ptype: str, variation_ids: list[int], created: int, site: str
) -> dict[str, Any]:
    """Every field of a product that does not depend on its index facts (status, dates)."""
    rng = record_rng(seed, PRODUCT_SALT, product_id)
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {product_id}"
    slug = slugify(name)
    sku = "" if rng.random() < 0.45 else f"SKU-{product_id:06d}"
    if rng.random() < 0.03:
        sku = "SAMPLE"  # merchants reuse SKUs; they are not unique
    regular = "" if ptype in ("variable", "grouped") or rng.random() < 0.04 else money(rng)
    sale = ""
    if regular and rng.random() < 0.2:
        sale = f"{max(0.01, float(regular) * 0.8):.2f}"
    manage, qty, status = stock(rng)
    cats = rng.sample(CATEGORIES, rng.randint(1, 2))
    attributes, defaults = _attributes(rng, ptype)
    body: dict[str, Any] = {
        "id": product_id,
        "name": name,
        "slug": slug,
        "permalink": f"{site}/product/{slug}/",
        "type": ptype,
        "featured": rng.random() < 0.05,
        "catalog_visibility": "visible",
        "description": DESCRIPTION,
        "short_description": DESCRIPTION,
        "sku": sku,
        "price": sale or regular,
        "regular_price": regular,
        "sale_price": sale,
        "date_on_sale_from": None,
        "date_on_sale_from_gmt": None,
        "date_on_sale_to": None,
        "date_on_sale_to_gmt": None,
        "price_html": f'<span class="amount">&#36;{sale or regular}</span>' if regular else "",
        "on_sale": bool(sale),
        "purchasable": bool(regular) or ptype == "variable",
        "total_sales": rng.randint(0, 500),
        "virtual": False,
        "downloadable": False,
        "downloads": [],
        "download_limit": -1,
        "download_expiry": -1,
        "external_url": f"{site}/go/{product_id}" if ptype == "external" else "",
        "button_text": "Buy at partner" if ptype == "external" else "",
        "tax_status": "taxable",
        "tax_class": "",
        "manage_stock": manage,
        "stock_quantity": qty,
        "stock_status": status,
        "backorders": "notify" if qty is not None and qty < 0 else "no",
        "backorders_allowed": qty is not None and qty < 0,
        "backordered": qty is not None and qty < 0,
        "sold_individually": False,
        "weight": rng.choice(("", "0.5", "2")),
        "dimensions": {"length": "", "width": "", "height": ""},
        "shipping_required": True,
        "shipping_taxable": True,
        "shipping_class": "",
        "shipping_class_id": 0,
        "reviews_allowed": True,
        "average_rating": "0.00",
        "rating_count": 0,
        # Replaced per read by the catalog; still drawn so every later draw, and so every
        # generated catalog, stays what it was.
        "related_ids": sorted(rng.sample(range(10, 10 + 50), 5)),
        "upsell_ids": [],
        "cross_sell_ids": [],
        "parent_id": 0,
        "purchase_note": "",
        "categories": [{"id": c[0], "name": c[1], "slug": c[2]} for c in cats],
        "tags": [],
        "attributes": attributes,
        "default_attributes": defaults,
        "variations": list(variation_ids),
        "grouped_products": sorted(rng.sample(range(10, 60), 2)) if ptype == "grouped" else [],
        "menu_order": 0,
        "meta_data": meta_data(rng, product_id * 10),
        "_links": {
            "self": [{"href": f"{site}/wp-json/wc/v3/products/{product_id}"}],
            "collection": [{"href": f"{site}/wp-json/wc/v3/products"}],
        },
    }
    if rng.random() < 0.1:
        key, value = rng.choice(PLUGIN_KEYS)
        body[key] = value
    body["images"] = [
        image(product_id * 100 + i, created - 60 + i, SITE_OFFSET, site) for i in range(rng.randint(0, 3))
    ]
    return body


def _attributes(rng: random.Random, ptype: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if ptype != "variable":
        return [], []
    attributes = [
        {"id": 6, "name": "Color", "position": 0, "visible": False, "variation": True,
         "options": list(COLORS)},
        {"id": 0, "name": "Size", "position": 1, "visible": True, "variation": True,
         "options": list(SIZES)},
    ]  # fmt: skip
    defaults = [{"id": 6, "name": "Color", "option": rng.choice(COLORS).lower()}]
    return attributes, defaults


def variation_body(
    seed: int, variation_id: int, parent: dict[str, Any], created: int, site: str
) -> dict[str, Any]:
    """A variation: its own price and stock, or ``manage_stock: "parent"`` with the parent's stock."""
    rng = record_rng(seed, VARIATION_SALT, variation_id)
    pid = parent["id"]
    regular = "" if rng.random() < 0.03 else money(rng)
    sale = f"{max(0.01, float(regular) * 0.9):.2f}" if regular and rng.random() < 0.15 else ""
    manage: bool | str
    manage, qty, status = stock(rng)
    if parent["manage_stock"] is True and rng.random() < 0.5:
        manage, qty, status = "parent", parent["stock_quantity"], parent["stock_status"]
    color, size = rng.choice(COLORS), rng.choice(SIZES)
    own_sku = rng.random() < 0.5
    return {
        "id": variation_id,
        "parent_id": pid,
        "description": "",
        # A trashed parent's permalink is already a query URL (``?post_type=product&p=N``).
        "permalink": f"{parent['permalink']}{'&' if '?' in parent['permalink'] else '?'}"
        f"attribute_pa_color={color.lower()}",
        "sku": f"{parent['sku'] or 'VAR'}-{variation_id}" if own_sku else parent["sku"],
        "price": sale or regular,
        "regular_price": regular,
        "sale_price": sale,
        "date_on_sale_from": None,
        "date_on_sale_from_gmt": None,
        "date_on_sale_to": None,
        "date_on_sale_to_gmt": None,
        "on_sale": bool(sale),
        "purchasable": bool(regular),
        "virtual": False,
        "downloadable": False,
        "downloads": [],
        "download_limit": -1,
        "download_expiry": -1,
        "tax_status": "taxable",
        "tax_class": "",
        "manage_stock": manage,
        "stock_quantity": qty,
        "stock_status": status,
        "backorders": "no",
        "backorders_allowed": False,
        "backordered": False,
        "weight": "",
        "dimensions": {"length": "", "width": "", "height": ""},
        "shipping_class": "",
        "shipping_class_id": 0,
        "attributes": [
            {"id": 6, "name": "Color", "option": color},
            {"id": 0, "name": "Size", "option": size},
        ],
        "menu_order": 0,
        "meta_data": meta_data(rng, variation_id * 10),
        "_links": {
            "self": [{"href": f"{site}/wp-json/wc/v3/products/{pid}/variations/{variation_id}"}],
            "collection": [{"href": f"{site}/wp-json/wc/v3/products/{pid}/variations"}],
            "up": [{"href": f"{site}/wp-json/wc/v3/products/{pid}"}],
        },
        "image": image(variation_id * 100, created - 60, SITE_OFFSET, site) if rng.random() < 0.7 else None,
    }
