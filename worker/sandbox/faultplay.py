"""How each injected fault looks on the wire: the parts common to every simulator.

Status pages, HTML-with-200 and authentication failures differ per upstream and come from the
simulator's ``fault_response``; hanging, truncating, PHP notices and oversized bodies are the same
everywhere and live here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from worker.sandbox.faults import FaultInjector, FaultSpec
from worker.sandbox.wire import Request, Response

if TYPE_CHECKING:
    from worker.sandbox.http import Simulator, _Handler

CHUNK_BYTES = 64 * 1024

PHP_NOTICE = (
    b"<br />\n<b>Notice</b>:  Undefined index: attribute_pa_size in "
    b"<b>/var/www/html/wp-content/plugins/woo-variation-swatches/includes/class-swatches.php</b>"
    b" on line <b>212</b><br />\n"
)

WORDPRESS_MAINTENANCE = (
    b'<!DOCTYPE html>\n<html lang="en-US">\n<head>\n\t<meta charset="utf-8">\n'
    b"\t<title>Maintenance</title>\n</head>\n<body>\n\t<div>\n"
    b"\t\t<p>Briefly unavailable for scheduled maintenance. Check back in a minute.</p>\n"
    b"\t</div>\n</body>\n</html>\n"
)

CACHE_PLUGIN_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en-US">\n<head>\n<meta charset="UTF-8">\n'
    b'<title>Just a moment...</title>\n<meta name="robots" content="noindex,nofollow">\n'
    b"</head>\n<body>\n<h1>Checking your browser before accessing the shop.</h1>\n"
    b"<p>This process is automatic. Your browser will redirect to your requested content shortly.</p>\n"
    b"<!-- Performance optimized by W3 Total Cache. Page Caching using Disk: Enhanced -->\n"
    b"</body>\n</html>\n"
)

REASONS = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


class ServerSide(Protocol):
    """What a fault needs from the server that plays it: its stop signal and the injector to report to."""

    @property
    def stopping(self) -> threading.Event: ...

    @property
    def faults(self) -> FaultInjector: ...


def reason(status: int) -> str:
    return REASONS.get(status, "Error")


def proxy_error_page(status: int) -> bytes:
    """The page a reverse proxy serves when the application behind it fails."""
    title = f"{status} {reason(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


def retry_after_headers(fault: FaultSpec) -> list[tuple[str, str]]:
    """``Retry-After`` in seconds or as an HTTP date, exactly as configured."""
    if fault.retry_after is None:
        return []
    value = fault.retry_after
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return [("Retry-After", str(value))]


def play(
    handler: _Handler,
    fault: FaultSpec,
    request: Request,
    simulator: Simulator,
    control: ServerSide,
) -> None:
    """Answer ``request`` with ``fault`` applied."""
    kind = fault.kind
    if kind == "hang":
        _hang(handler, fault, control)
    elif kind == "php_notice":
        _php_notice(handler, simulator.handle(request))
    elif kind == "truncated":
        _truncated(handler, fault, simulator.handle(request))
    elif kind == "oversized":
        _oversized(handler, fault, request, simulator, control)
    else:
        handler.send(simulator.fault_response(fault, request))


def _hang(handler: _Handler, fault: FaultSpec, control: ServerSide) -> None:
    # The request was read and accepted; no byte is answered. Stopping the server releases it.
    control.stopping.wait(fault.hang_seconds)
    handler.close_connection = True


def _php_notice(handler: _Handler, response: Response) -> None:
    response.status = 200
    response.body = PHP_NOTICE + response.body
    handler.send(response)


def _truncated(handler: _Handler, fault: FaultSpec, response: Response) -> None:
    cut = response.body[: max(1, len(response.body) // 2)]
    declared = len(response.body) if fault.truncated_full_length else len(cut)
    handler.send_head(response, declared)
    handler.wfile.write(cut)
    handler.wfile.flush()
    handler.close_connection = True
    _close_now(handler)


def _close_now(handler: _Handler) -> None:
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_WR)


def _oversized(
    handler: _Handler,
    fault: FaultSpec,
    request: Request,
    simulator: Simulator,
    control: ServerSide,
) -> None:
    head, unit, tail, content_type = simulator.oversized_parts(request)
    total = fault.oversized_bytes
    chunked = not fault.oversized_content_length
    handler.send_head(Response(200, b"", content_type), None if chunked else total)
    handler.close_connection = True
    sent = 0
    completed = False
    try:
        for piece in _body_pieces(head, unit, tail, total):
            if control.stopping.is_set():
                break
            if chunked:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                handler.wfile.write(piece)
            sent += len(piece)
        else:
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            completed = True
    except OSError:
        # The client hung up, which is what a size limit is supposed to do.
        pass
    finally:
        control.faults.record_oversized(sent, completed=completed)


def _body_pieces(head: bytes, unit: bytes, tail: bytes, total: int) -> Iterator[bytes]:
    """Chunks of about ``CHUNK_BYTES`` adding up to exactly ``total`` bytes of valid-looking body."""
    block = unit * max(1, CHUNK_BYTES // max(1, len(unit)))
    piece = head[:total]
    left = total - len(piece)
    yield piece
    while left > len(tail):
        piece = block[: left - len(tail)]
        left -= len(piece)
        yield piece
    if left > 0:
        yield tail[-left:]
