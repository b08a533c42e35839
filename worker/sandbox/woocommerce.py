"""A fake WooCommerce REST v3 store on loopback: products, variations, auth, paging headers."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from worker.sandbox import faultplay
from worker.sandbox.catalog_woo import WooCatalog
from worker.sandbox.faults import FaultInjector, FaultSpec
from worker.sandbox.http import Simulator
from worker.sandbox.rng import hex_token
from worker.sandbox.throttle import HostThrottle
from worker.sandbox.wire import Request, Response, json_response
from worker.sandbox.woo_params import InvalidParam, ListParams, only_fields, parse_list, requested_fields
from worker.sandbox.woo_site import WC_VERSION, WP_VERSION, site_index, system_status

API = "/wp-json/wc/v3"
ROUTE = re.compile(rf"^{API}/products(?:/(\d+)(?:/variations(?:/(\d+))?)?)?/?$")
NO_ROUTE = {
    "code": "rest_no_route",
    "message": "No route was found matching the URL and request method",
    "data": {"status": 404},
}
INVALID_ID = {
    "code": "woocommerce_rest_product_invalid_id",
    "message": "Invalid ID.",
    "data": {"status": 404},
}
CANNOT_LIST = "Sorry, you cannot list resources."
CANNOT_VIEW = "Sorry, you cannot view this resource."
INDEX_PATHS = ("/wp-json", "/wp-json/")
SYSTEM_STATUS = f"{API}/system_status"
# A known key with the wrong secret (measured, 9.9.5); an unknown key is just not logged in.
WRONG_SECRET = {
    "code": "woocommerce_rest_authentication_error",
    "message": "Consumer secret is invalid.",
    "data": {"status": 401},
}


def cannot_view(status: int, message: str = CANNOT_LIST) -> Response:
    return json_response(
        status, {"code": "woocommerce_rest_cannot_view", "message": message, "data": {"status": status}}
    )


class WooCommerceSimulator(Simulator):
    """``with WooCommerceSimulator(seed=1, size=1000) as woo: requests.get(woo.base_url + ...)``."""

    def __init__(
        self,
        seed: int = 1,
        size: int = 1000,
        *,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        throttle: HostThrottle | None = None,
    ) -> None:
        super().__init__(faults=faults, host=host, port=port, clock=clock, throttle=throttle)
        self.catalog = WooCatalog(seed, size, clock=self.now)
        self.consumer_key = "ck_" + hex_token(seed, 101, 40)
        self.consumer_secret = "cs_" + hex_token(seed, 102, 40)
        self.wc_version = WC_VERSION
        self.wp_version = WP_VERSION
        # False models a key whose user may list products but not manage WooCommerce.
        self.system_status_readable = True

    def on_started(self) -> None:
        self.catalog.site_url = self.base_url

    @property
    def api_url(self) -> str:
        return self.base_url + API

    def handle(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD") and request.path in INDEX_PATHS:
            # Public: WooCommerce's key check runs only for its own routes.
            return json_response(200, only_fields(site_index(self.base_url), requested_fields(request)))
        if request.method in ("GET", "HEAD") and request.path.rstrip("/") == SYSTEM_STATUS:
            return self._system_status(request)
        match = ROUTE.match(request.path)
        if match is None or request.method not in ("GET", "HEAD"):
            return json_response(404, NO_ROUTE)
        product_id, variation_id = match.group(1), match.group(2)
        is_collection = product_id is None or (
            request.path.rstrip("/").endswith("/variations") and variation_id is None
        )
        refused = self._refusal(request, CANNOT_LIST if is_collection else CANNOT_VIEW)
        if refused is not None:
            return refused
        try:
            if product_id is None:
                return self._list_products(request, parse_list(request))
            if variation_id is not None:
                return self._variation(request, int(product_id), int(variation_id))
            if is_collection:
                return self._list_variations(request, int(product_id), parse_list(request))
            return self._product(request, int(product_id))
        except InvalidParam as exc:
            return json_response(400, exc.body)

    def _refusal(self, request: Request, message: str) -> Response | None:
        """None when the request carries our key and secret; else WooCommerce's 401 for it."""
        key, secret = request.param("consumer_key"), request.param("consumer_secret")
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                key, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                key = secret = None
        if not hmac.compare_digest(key or "", self.consumer_key):
            return cannot_view(401, message)
        if not hmac.compare_digest(secret or "", self.consumer_secret):
            return json_response(401, WRONG_SECRET)
        return None

    def _system_status(self, request: Request) -> Response:
        refused = self._refusal(request, CANNOT_LIST)
        if refused is not None:
            return refused
        if not self.system_status_readable:
            # Logged in through the key but without manage_woocommerce: 403, not 401.
            return cannot_view(403, CANNOT_LIST)
        body = system_status(self.base_url, self.wc_version, self.wp_version)
        return json_response(200, only_fields(body, requested_fields(request)))

    def _list_products(self, request: Request, params: ListParams) -> Response:
        ids = self.catalog.query_products(
            statuses=params.statuses,
            modified_after=params.modified_after,
            modified_before=params.modified_before,
            created_after=params.created_after,
            created_before=params.created_before,
            include=params.include,
            orderby=params.orderby,
            descending=params.descending,
        )
        window = ids[(params.page - 1) * params.per_page : params.page * params.per_page]
        rows = self.catalog.render_products(window)
        return self._page(request, params, rows, len(ids))

    def _list_variations(self, request: Request, product_id: int, params: ListParams) -> Response:
        if not self.catalog.has_product(product_id):
            return json_response(404, INVALID_ID)
        ids = self.catalog.query_variations(
            product_id,
            statuses=params.statuses,
            orderby=params.orderby,
            descending=params.descending,
            modified_after=params.modified_after,
            modified_before=params.modified_before,
            include=params.include,
        )
        window = ids[(params.page - 1) * params.per_page : params.page * params.per_page]
        rows = self.catalog.render_variations(product_id, window)
        return self._page(request, params, rows, len(ids))

    def _page(self, request: Request, params: ListParams, rows: list[dict[str, Any]], total: int) -> Response:
        pages = math.ceil(total / params.per_page)
        headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages))]
        links = self._links(request, params.page, pages)
        if links:
            headers.append(("Link", links))
        return json_response(200, [only_fields(r, params.fields) for r in rows], headers)

    def _links(self, request: Request, page: int, pages: int) -> str:
        """prev/next links echoing every query parameter, keys included, as WordPress does."""
        pairs = [(k, v) for k, values in request.query.items() if k != "page" for v in values]
        base = self.base_url + request.path

        def link(target: int, rel: str) -> str:
            return f'<{base}?{urlencode([*pairs, ("page", str(target))])}>; rel="{rel}"'

        parts = []
        if page > 1:
            parts.append(link(min(page - 1, max(pages, 1)), "prev"))
        if pages > page:
            parts.append(link(page + 1, "next"))
        return ", ".join(parts)

    def _product(self, request: Request, product_id: int) -> Response:
        try:
            record = self.catalog.get(product_id)
        except KeyError:
            return json_response(404, INVALID_ID)
        if record.get("parent_id"):
            return json_response(404, INVALID_ID)
        return json_response(200, only_fields(record, parse_list(request).fields))

    def _variation(self, request: Request, product_id: int, variation_id: int) -> Response:
        try:
            record = self.catalog.get(variation_id)
        except KeyError:
            return json_response(404, INVALID_ID)
        if record.get("parent_id") != product_id or "variations" in record:
            return json_response(404, INVALID_ID)
        return json_response(200, only_fields(record, parse_list(request).fields))

    def fault_response(self, fault: FaultSpec, request: Request) -> Response:
        headers = faultplay.retry_after_headers(fault)
        if fault.kind == "html200":
            return Response(200, faultplay.CACHE_PLUGIN_PAGE, "text/html; charset=UTF-8")
        if fault.kind == "auth":
            return cannot_view(fault.auth_status)
        if fault.status == 503:
            return Response(503, faultplay.WORDPRESS_MAINTENANCE, "text/html; charset=utf-8", headers)
        return json_response(fault.status, _error_body(fault.status), headers)

    def oversized_parts(self, request: Request) -> tuple[bytes, bytes, bytes, str]:
        ids = self.catalog.query_products(statuses=frozenset({"publish"}), orderby="id")
        sample = self.catalog.render_products(ids[:1]) or [{"id": 1, "name": "x"}]
        unit = json.dumps(sample[0], separators=(",", ":")).encode()
        return b"[", unit + b",", unit + b"]", "application/json; charset=UTF-8"


def _error_body(status: int) -> dict[str, Any]:
    if status == 500:
        return {
            "code": "internal_server_error",
            "message": "<p>There has been a critical error on this website.</p>",
            "data": {"status": 500},
            "additional_errors": [],
        }
    code = {429: "rest_too_many_requests", 502: "rest_bad_gateway", 504: "rest_gateway_timeout"}
    return {
        "code": code.get(status, f"http_{status}"),
        "message": faultplay.reason(status),
        "data": {"status": status},
    }
