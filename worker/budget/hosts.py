"""Which budget a call draws from: its upstream's host, the same for every source there."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def host_of(url: str) -> str:
    """``host`` or ``host:port`` (the scheme's default port left out), lower-cased.

    Two shops on one server share one budget; http and https of one name are one server.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if not host:
        msg = f"no host in {url!r}"
        raise ValueError(msg)
    if ":" in host:  # an IPv6 literal keeps its brackets, as in a URL
        host = f"[{host}]"
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"


def budget_key(prefix: str, host: str) -> str:
    """The host's hash; the hash tag keeps it in one Redis Cluster slot."""
    return f"{prefix}:budget:{{{host}}}"
