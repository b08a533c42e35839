"""Probing WooCommerce for `syncworker health`: the site answers, the key is accepted, which versions run.

Built to what WordPress and WooCommerce answer: the REST index (``/wp-json/``) is public and lists the
registered namespaces but never a version; an unknown key gets ``401 woocommerce_rest_cannot_view``,
as no key does, and a known key with a wrong secret ``401 woocommerce_rest_authentication_error``
"Consumer secret is invalid."; the versions come only from ``system_status``, which a key reads only
when its user may manage WooCommerce.
"""

from __future__ import annotations

from typing import Any

import requests

from worker.infra.errors import AuthenticationError, RetriableUpstreamError, UpstreamError
from worker.infra.settings import Settings
from worker.kinds.woocommerce.client import API_PATH, UPSTREAM, credentials, parse_page
from worker.upstream.http import HttpResponse
from worker.upstream.probe import (
    OPERATION,
    BudgetTransport,
    ProbeFailed,
    ProbeReport,
    budget_transport,
    json_object,
    new_report,
    no_answer,
    no_answer_reason,
    request_failure,
    upstream_words,
)

LABEL = "WooCommerce"
NAMESPACE = "wc/v3"
# Only these two: asked for the whole ``environment``, WooCommerce first tests outbound HTTP to
# paypal.com and woocommerce.com, which can take seconds.
VERSION_FIELDS = "environment.version,environment.wp_version"
URL_HINT = "check WOOCOMMERCE_URL (the shop's canonical address) and that the WooCommerce plugin is active"
KEY_HINT = (
    "check WOOCOMMERCE_CONSUMER_KEY/SECRET and the key's permissions (Read); behind a proxy that "
    "terminates TLS, WordPress must also see the request as HTTPS"
)
SECRET_HINT = "check WOOCOMMERCE_CONSUMER_SECRET (the one issued with WOOCOMMERCE_CONSUMER_KEY)"  # noqa: S105


def probe_woocommerce(settings: Settings, *, session: requests.Session | None = None) -> ProbeReport:
    """Ask the configured shop for its index, one product id, and its versions."""
    if not settings.woocommerce_url:
        msg = "WOOCOMMERCE_URL is not configured"
        raise ValueError(msg)
    with budget_transport(settings, UPSTREAM, session) as transport:
        return _ShopProbe(settings, settings.woocommerce_url, transport).run()


class _ShopProbe:
    """The three requests of one probe, filling one report."""

    def __init__(self, settings: Settings, url: str, transport: BudgetTransport) -> None:
        self.base = url.rstrip("/")
        self.api = self.base + API_PATH
        self.auth, self.keys = credentials(settings)
        self.transport = transport
        self.report = new_report(self.base)

    def run(self) -> ProbeReport:
        try:
            self.check_site()
            self.check_key()
            self.read_versions()
        except ProbeFailed as exc:
            self.report.problem = str(exc)
        else:
            self.report.summary = self.summary()
        return self.report

    def check_site(self) -> None:
        # No credentials: the index is public, and WooCommerce's key check does not run outside wc/.
        try:
            resp = self.get(f"{self.base}/wp-json/", {"_fields": "name,namespaces"}, with_key=False)
        except UpstreamError as exc:
            if no_answer(exc) or isinstance(exc, RetriableUpstreamError):
                raise self.failure(exc) from None
            # Security plugins often close the index to visitors; the key check below still decides.
            self.report.reachable = True
            self.report.extra["site_index"] = upstream_words(exc)
            return
        self.report.reachable = True
        namespaces = json_object(resp).get("namespaces")
        if isinstance(namespaces, list) and NAMESPACE not in namespaces:
            msg = f"{LABEL}'s REST API ({NAMESPACE}) is not served at {self.report.url}: is it active?"
            raise ProbeFailed(msg)

    def check_key(self) -> None:
        try:
            resp = self.get(f"{self.api}/products", {"per_page": 1, "_fields": "id"})
            # An HTML page served with 200 (a cache, a login wall) proves nothing about the key.
            parse_page(resp, 1, OPERATION)
        except AuthenticationError as exc:
            self.report.authenticated = False
            raise ProbeFailed(self.refusal(exc)) from None
        except UpstreamError as exc:
            raise self.failure(exc) from None
        self.report.authenticated = True

    def refusal(self, exc: AuthenticationError) -> str:
        words = upstream_words(exc)
        if words.startswith("HTTP "):
            # Not WooCommerce's JSON error: a firewall, a WAF or a security plugin answered instead.
            return f"{LABEL} at {self.report.url} was refused ({words}) before WooCommerce: {KEY_HINT}"
        if "authentication_error" in words and "secret" in words.lower():
            return f"{LABEL} refused the consumer secret ({words}): {SECRET_HINT}"
        return f"{LABEL} refused the consumer key ({words}): {KEY_HINT}"

    def read_versions(self) -> None:
        # The shop answered and took the key: a version it will not tell is a note, never a failure.
        try:
            resp = self.get(f"{self.api}/system_status", {"_fields": VERSION_FIELDS})
        except AuthenticationError:
            self.report.extra["version_note"] = "hidden: the key's user may not read system_status"
            return
        except UpstreamError as exc:
            reason = no_answer_reason(exc, self.transport.budget) if no_answer(exc) else upstream_words(exc)
            self.report.extra["version_note"] = f"unavailable: {reason}"
            return
        environment = json_object(resp).get("environment")
        if not isinstance(environment, dict):
            self.report.extra["version_note"] = "unavailable: system_status answered without an environment"
            return
        self.report.version = _text(environment.get("version"))
        wordpress = _text(environment.get("wp_version"))
        if wordpress:
            self.report.extra["wordpress_version"] = wordpress

    def summary(self) -> str:
        wordpress = self.report.extra.get("wordpress_version")
        parts = (LABEL, self.report.version, f"(WordPress {wordpress})" if wordpress else None)
        note = self.report.extra.get("version_note")
        text = f"{' '.join(p for p in parts if p)} at {self.report.url}: consumer key accepted"
        return f"{text}; version {note}" if note else text

    def get(self, url: str, params: dict[str, Any], *, with_key: bool = True) -> HttpResponse:
        if not with_key:
            return self.transport.request("GET", url, operation=OPERATION, params=params)
        return self.transport.request(
            "GET", url, operation=OPERATION, params={**params, **self.keys}, auth=self.auth
        )

    def failure(self, exc: UpstreamError) -> ProbeFailed:
        return request_failure(LABEL, self.report, exc, self.transport.budget, URL_HINT)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
