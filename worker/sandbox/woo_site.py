"""The WordPress side of the WooCommerce simulator: the REST index and WooCommerce's system status.

Shapes follow WordPress 6.8's ``WP_REST_Server::get_index`` and WooCommerce 9.9's system status
controller, trimmed to what a client reads. The index is public and carries no version (WordPress
never puts one there); the versions are in ``system_status``, which only a key whose user may manage
WooCommerce can read.
"""

from __future__ import annotations

from typing import Any

from worker.sandbox.woo_render import SITE_OFFSET

WC_VERSION = "9.9.5"
WP_VERSION = "6.8"
SITE_NAME = "Sandbox Shop"
# What a store with WooCommerce active registers (the real list has a few more of each family).
NAMESPACES = (
    "oembed/1.0", "wc/store", "wc/store/v1", "wc-admin", "wc-analytics", "wc/v1", "wc/v2", "wc/v3",
    "wp/v2", "wp-site-health/v1", "wp-block-editor/v1",
)  # fmt: skip
# The routes this simulator serves; the real index describes every route of every namespace.
ROUTES = (
    "/wc/v3",
    "/wc/v3/products",
    "/wc/v3/products/(?P<id>[\\d]+)",
    "/wc/v3/products/(?P<product_id>[\\d]+)/variations",
    "/wc/v3/products/(?P<product_id>[\\d]+)/variations/(?P<id>[\\d]+)",
    "/wc/v3/system_status",
)


def site_index(base_url: str) -> dict[str, Any]:
    """``GET /wp-json/``: site data, namespaces and routes; ``_links`` only without ``_fields``."""
    api = f"{base_url}/wp-json"
    routes = {
        route: {
            "namespace": "wc/v3",
            "methods": ["GET"],
            "endpoints": [{"methods": ["GET"], "args": {}}],
        }
        for route in ROUTES
    }
    return {
        "name": SITE_NAME,
        "description": "",
        "url": base_url,
        "home": base_url,
        "gmt_offset": str(SITE_OFFSET // 3600),
        "timezone_string": "",
        "page_for_posts": 0,
        "page_on_front": 0,
        "show_on_front": "posts",
        "namespaces": list(NAMESPACES),
        "authentication": {
            "application-passwords": {
                "endpoints": {"authorization": f"{base_url}/wp-admin/authorize-application.php"}
            }
        },
        "routes": routes,
        "site_logo": 0,
        "site_icon": 0,
        "site_icon_url": "",
        "_links": {"help": [{"href": "https://developer.wordpress.org/rest-api/"}], "self": [{"href": api}]},
    }


def system_status(base_url: str, wc_version: str, wp_version: str) -> dict[str, Any]:
    """``GET /wc/v3/system_status``, the sections a client reads, with the environment in full."""
    return {
        "environment": {
            "home_url": base_url,
            "site_url": base_url,
            "version": wc_version,
            "log_directory": "/var/www/html/wp-content/uploads/wc-logs/",
            "log_directory_writable": True,
            "wp_version": wp_version,
            "wp_multisite": False,
            "wp_memory_limit": 268435456,
            "wp_debug_mode": False,
            "wp_cron": True,
            "language": "en_US",
            "external_object_cache": False,
            "server_info": "nginx",
            "php_version": "8.2.28",
            "php_post_max_size": 67108864,
            "php_max_execution_time": 30,
            "php_max_input_vars": 1000,
            "curl_version": "7.88.1, OpenSSL/3.0.15",
            "suhosin_installed": False,
            "max_upload_size": 67108864,
            "mysql_version": "8.0.42",
            "mysql_version_string": "8.0.42",
            "default_timezone": "UTC",
            "fsockopen_or_curl_enabled": True,
            "soapclient_enabled": False,
            "domdocument_enabled": True,
            "gzip_enabled": True,
            "mbstring_enabled": True,
            "remote_post_successful": True,
            "remote_post_response": 200,
            "remote_get_successful": True,
            "remote_get_response": 200,
        },
        "database": {"wc_database_version": wc_version, "database_prefix": "wp_"},
        "active_plugins": [
            {"plugin": "woocommerce/woocommerce.php", "name": "WooCommerce", "version": wc_version}
        ],
        "settings": {"api_enabled": True, "currency": "USD", "currency_symbol": "&#36;"},
        "security": {"secure_connection": base_url.startswith("https://"), "hide_errors": True},
    }
