"""WooCommerce REST v3 client: products and variations, page by page.

Pages are numbered (``X-WP-TotalPages``); once the total is known the following pages are fetched
by a bounded pool but yielded in page order, holding at most ``woocommerce_page_concurrency``
pages ahead of the consumer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import tenacity
from requests.auth import HTTPBasicAuth

from worker.infra.errors import FatalUpstreamError, MalformedPayload
from worker.infra.settings import Settings
from worker.kinds.woocommerce.paging import PageNumbers
from worker.upstream.calls import GuardedClient
from worker.upstream.http import HttpResponse, HttpTransport, parse_json
from worker.upstream.protocols import Breaker, EventSink

UPSTREAM = "woocommerce"
API_PATH = "/wp-json/wc/v3"
PER_PAGE = 100  # WooCommerce's maximum; more is a 400 rest_invalid_param
WOO_DATETIME = "%Y-%m-%dT%H:%M:%S"
NOT_FOUND = 404


@dataclass(frozen=True)
class WooPage:
    """One page of raw records, with where it sits in the listing."""

    records: list[dict[str, Any]]
    page: int
    total_pages: int | None
    total: int | None


def woo_datetime(value: datetime) -> str:
    """A naive UTC timestamp, as ``modified_after`` expects with ``dates_are_gmt=true``."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(WOO_DATETIME)


def credentials(settings: Settings) -> tuple[HTTPBasicAuth | None, dict[str, str]]:
    """HTTP Basic auth, or query-string keys for hosts that strip Authorization (summaries redact them)."""
    key = settings.woocommerce_consumer_key
    secret = settings.woocommerce_consumer_secret
    if key is None or secret is None:
        msg = "WOOCOMMERCE_CONSUMER_KEY and WOOCOMMERCE_CONSUMER_SECRET are required"
        raise ValueError(msg)
    if settings.woocommerce_auth == "query":
        return None, {"consumer_key": key.get_secret_value(), "consumer_secret": secret.get_secret_value()}
    return HTTPBasicAuth(key.get_secret_value(), secret.get_secret_value()), {}


def _int_header(resp: HttpResponse, name: str) -> int | None:
    value = resp.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def parse_page(resp: HttpResponse, page: int, operation: str) -> WooPage:
    """A checked page: a JSON list of objects, or ``MalformedPayload`` -- never an empty catalog.

    Caching plugins serve HTML with 200 and PHP prints notices before the JSON; both must fail
    loudly, or a full sync would conclude every product was deleted.
    """
    ctx: dict[str, Any] = {
        "upstream": UPSTREAM,
        "operation": operation,
        "status_code": resp.status_code,
        "request": resp.request,
        "response": resp.summary(),
    }
    content_type = resp.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        msg = f"expected JSON, got Content-Type {content_type or 'none'!r}"
        raise MalformedPayload(msg, **ctx)
    try:
        data = parse_json(resp.body)
    except ValueError as exc:
        msg = f"unparseable JSON body ({exc.__class__.__name__}: {exc})"
        raise MalformedPayload(msg, **ctx) from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        msg = f"expected a JSON list of objects, got {type(data).__name__}"
        raise MalformedPayload(msg, **ctx)
    return WooPage(data, page, _int_header(resp, "X-WP-TotalPages"), _int_header(resp, "X-WP-Total"))


def check_advances(page: WooPage, previous_first: int | None, operation: str) -> int | None:
    """Refuse a page that starts where an earlier one did: a cache that ignores the query string.

    Such a cache serves page 1 for every page number; yielding it would duplicate page 1 and hide
    every other product, which a full sync would then mark deleted.
    """
    first = page.records[0].get("id")
    if not isinstance(first, int):
        return previous_first
    if previous_first is not None and first <= previous_first:
        msg = (
            f"page {page.page} starts at id {first}, not after {previous_first}: is a cache ignoring ?page=?"
        )
        raise FatalUpstreamError(msg, upstream=UPSTREAM, operation=operation)
    return first


class WooCommerceClient(GuardedClient):
    """Reads products and variations; every request goes retry -> breaker -> transport."""

    def __init__(
        self,
        settings: Settings,
        breaker: Breaker,
        event_log: EventSink,
        retrying: tenacity.Retrying | None = None,
        *,
        correlation_id: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not settings.woocommerce_url:
            msg = "WOOCOMMERCE_URL is not configured"
            raise ValueError(msg)
        self._base = settings.woocommerce_url.rstrip("/") + API_PATH
        self._transport = HttpTransport(settings, UPSTREAM, session=session)
        self._concurrency = settings.woocommerce_page_concurrency
        self._auth, self._auth_params = credentials(settings)
        self._guard_calls(
            UPSTREAM, settings, breaker, event_log, retrying,
            base_url=settings.woocommerce_url, correlation_id=correlation_id,
        )  # fmt: skip

    def server_time(self) -> datetime | None:
        """The upstream's clock at its latest answer (its ``Date`` header), None before any."""
        return self._transport.server_date

    def iter_product_pages(
        self,
        *,
        modified_after: datetime | None = None,
        modified_before: datetime | None = None,
        status: str = "any",
        start_page: int = 1,
        include: Sequence[int] | None = None,
    ) -> Iterator[WooPage]:
        """Products ordered by id; ``status="any"`` excludes trash, so ask for ``"trash"`` too.

        ``include`` restricts the listing to those ids (a direct read of known candidates).
        """
        params: dict[str, Any] = {"status": status, "orderby": "id", "order": "asc"}
        if modified_after is not None or modified_before is not None:
            params["dates_are_gmt"] = "true"
        if modified_after is not None:
            params["modified_after"] = woo_datetime(modified_after)
        if modified_before is not None:
            params["modified_before"] = woo_datetime(modified_before)
        if include is not None:
            params["include"] = ",".join(str(int(i)) for i in include)
        return self._iter_pages("/products", params, "fetch_products", start_page)

    def iter_variation_pages(self, product_id: int, status: str = "any") -> Iterator[WooPage]:
        """The variations of one variable product, ordered by id.

        A trashed parent's variations are trashed with it and listed only with ``status="trash"``.
        """
        params = {"orderby": "id", "order": "asc", "status": status}
        path = f"/products/{int(product_id)}/variations"
        return self._iter_pages(path, params, "fetch_variations", 1)

    def variation_exists(self, product_id: int, variation_id: int) -> bool:
        """Read one variation directly: False only when upstream answers 404 for it."""
        path = f"/products/{int(product_id)}/variations/{int(variation_id)}"
        query = dict(self._auth_params)

        def send() -> bool:
            try:
                self._transport.request(
                    "GET", self._base + path, operation="read_variation", params=query, auth=self._auth
                )
            except FatalUpstreamError as exc:
                if exc.status_code == NOT_FOUND:
                    return False
                raise
            return True

        return bool(self._guarded("read_variation", send))

    def list_product_ids(self, status: str = "any", start_page: int = 1) -> Iterator[tuple[int, list[Any]]]:
        """Every product's ``id`` value with ``status`` as ``(page number, ids)``: the cheap deletion scan.

        Values are passed on as upstream sent them: a record without a usable id makes the listing
        useless as evidence of deletion, and only the caller can decide what that means.
        """
        params = {"status": status, "orderby": "id", "order": "asc", "_fields": "id"}
        for page in self._iter_pages("/products", params, "list_product_ids", start_page):
            yield page.page, [r.get("id") for r in page.records]

    def newest_product_ids(self, above: int | None) -> list[int]:
        """Product ids (``status=any``) greater than ``above``, newest first; one request if None.

        WordPress ids are auto-increment, so a product created since the last look -- even one
        imported with a backdated ``date_created`` that no ``modified_after`` window shows -- has an
        id above every id seen before. The first answer's ``Date`` also tells the upstream's clock.
        """
        params = {"status": "any", "orderby": "id", "order": "desc", "_fields": "id"}
        newer: list[int] = []
        page = 1
        previous_last: Any = None
        while True:
            listing = self.fetch_page("/products", params, page, "newest_product_ids")
            ids = [r.get("id") for r in listing.records]
            if ids and previous_last is not None and ids[-1] == previous_last:
                msg = f"page {page} of the newest ids repeats the previous one: is a cache ignoring ?page=?"
                raise FatalUpstreamError(msg, upstream=UPSTREAM, operation="newest_product_ids")
            previous_last = ids[-1] if ids else None
            newer += [i for i in ids if isinstance(i, int) and above is not None and i > above]
            reached = any(isinstance(i, int) and (above is None or i <= above) for i in ids)
            if above is None or reached or len(ids) < PER_PAGE:
                return newer
            page += 1

    def fetch_page(self, path: str, params: dict[str, Any], page: int, operation: str) -> WooPage:
        """One page through retry and breaker."""
        query = {**params, "per_page": PER_PAGE, "page": page, **self._auth_params}
        url = self._base + path

        def send() -> WooPage:
            resp = self._transport.request("GET", url, operation=operation, params=query, auth=self._auth)
            return parse_page(resp, page, operation)

        return self._guarded(operation, send)

    def _iter_pages(
        self, path: str, params: dict[str, Any], operation: str, start_page: int
    ) -> Iterator[WooPage]:
        numbers = PageNumbers(next_page=max(1, start_page))
        pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="woo-page")
        pending: deque[Future[WooPage]] = deque()
        previous_first: int | None = None
        try:
            while True:
                while len(pending) < self._concurrency and numbers.known_remaining():
                    n = numbers.take()
                    pending.append(pool.submit(self.fetch_page, path, params, n, operation))
                if pending:
                    page = pending.popleft().result()
                elif numbers.unknown_remaining():
                    page = self.fetch_page(path, params, numbers.take(), operation)
                else:
                    return
                numbers.observe(page.page, len(page.records), PER_PAGE, page.total_pages)
                if page.records:
                    previous_first = check_advances(page, previous_first, operation)
                    yield page
        finally:
            # A failed page (breaker open, retries spent) or a consumer that stopped early: drop
            # what is queued; requests already on the wire finish in the background and are ignored.
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
