"""HTTP layer, retry policies, paging, and the Odoo and WooCommerce clients.

Composition order, the same in every client: ``retrying(lambda: breaker.call(transport_call))`` --
tenacity outside, the breaker around each attempt, errors classified at the transport edge.
"""

from worker.upstream.odoo import OdooClient, OdooPage
from worker.upstream.paging import OdooCursor
from worker.upstream.retry import build_retrying
from worker.upstream.woocommerce import WooCommerceClient, WooPage

__all__ = [
    "OdooClient",
    "OdooCursor",
    "OdooPage",
    "WooCommerceClient",
    "WooPage",
    "build_retrying",
]
