"""Local simulators of the Odoo and WooCommerce APIs, with fault injection changeable at run time.

```python
with WooCommerceSimulator(seed=1, size=1000) as woo:
    woo.base_url, woo.consumer_key, woo.consumer_secret
    woo.catalog.change(id, name="x"); woo.faults.set(kind="status", status=503, retry_after=2)
with OdooSimulator(seed=1, size=500, version="19.0") as odoo:
    odoo.base_url, odoo.db, odoo.login, odoo.api_key
with WooFleet(shops=500, size=20, latency_ms=100) as fleet:  # or OdooFleet(databases=...)
    fleet.source("shop-001"), fleet["shop-001"].faults.set(kind="hang"), fleet.edit("shop-001")
    fleet.throttle.set(rate=20, retry_after_share=0.2)  # the host's hidden limit, every shop together
    fleet.throttle.counts.throttled, fleet.throttle.arrivals()  # what reached the host, and when
```
"""

from __future__ import annotations

from worker.sandbox.catalog_odoo import OdooCatalog
from worker.sandbox.catalog_woo import WooCatalog
from worker.sandbox.faults import FaultInjector, FaultSpec, FaultSpecError
from worker.sandbox.fleet import OdooFleet, WooFleet
from worker.sandbox.odoo import OdooSimulator
from worker.sandbox.throttle import Arrival, HostThrottle, ThrottleCounts, ThrottleSpec
from worker.sandbox.woocommerce import WooCommerceSimulator

__all__ = [
    "Arrival",
    "FaultInjector",
    "FaultSpec",
    "FaultSpecError",
    "HostThrottle",
    "OdooCatalog",
    "OdooFleet",
    "OdooSimulator",
    "ThrottleCounts",
    "ThrottleSpec",
    "WooCatalog",
    "WooCommerceSimulator",
    "WooFleet",
]
