"""One loopback server answering for many simulators, each under its own ``/<name>/`` path prefix.

A tenant keeps its own catalog, credentials, clock and fault injector and sees the request path with
its prefix removed, so it answers exactly as it would on a port of its own. What cannot be per tenant
is the socket: every tenant shares one host, port and connection pool, so a tenant that is "down"
resets the connection that asked it (a separate host would refuse the connection instead; a client
sees a connection error either way) and its control endpoint stays reachable so it can be cleared.

Each connection gets its own thread and the added latency is a wait in that thread, so hundreds of
slow tenants answer side by side instead of queueing behind one another.

The host's own rate limit (``HostThrottle``) is one for the whole server, in front of every tenant,
and is controlled at ``/__throttle__`` on the server's root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import json
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from worker.sandbox import faultplay
from worker.sandbox.faults import FaultInjector
from worker.sandbox.http import CONTROL_PATH, Simulator, TrackingHTTPServer, _Handler, answer_fault_control
from worker.sandbox.throttle import THROTTLE_PATH, HostThrottle, answer_throttle_control
from worker.sandbox.wire import Request, Response, json_response

EDIT_PATH = "/__edit__"
# What a source name may be (lower-case letters, digits, dashes), so a tenant can be registered as-is.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NO_SUCH_HOST_PAGE = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

# (tenant name, record id or None for "pick one", fields) -> what was changed; KeyError, ValueError.
Editor = Callable[[str, int | None, dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class _TenantSide:
    """What playing a fault needs: the fleet's stop signal and this tenant's injector."""

    stopping: threading.Event
    faults: FaultInjector


class FleetServer:
    """Listens once and routes ``/<name>/...`` to ``tenants[name]`` with ``/...`` as the path."""

    def __init__(
        self,
        tenants: Mapping[str, Simulator],
        editor: Editor,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        throttle: HostThrottle | None = None,
    ) -> None:
        bad = [name for name in tenants if not NAME_PATTERN.match(name)]
        if bad:
            msg = f"tenant names are lower-case letters, digits and dashes: {', '.join(map(repr, bad))}"
            raise ValueError(msg)
        self.tenants = tenants
        self.editor = editor
        self.host = host
        self.port = port
        self.latency_ms = latency_ms
        self.throttle = throttle if throttle is not None else HostThrottle()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._conns: set[socket.socket] = set()
        self._httpd: _FleetHTTPServer | None = None

    def url_of(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}"

    def start(self) -> None:
        if self._httpd is not None:
            return
        self.stopping.clear()
        httpd = _FleetHTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        name = f"sandbox-fleet-{self.port}"
        kwargs = {"poll_interval": 0.05}
        threading.Thread(target=httpd.serve_forever, kwargs=kwargs, daemon=True, name=name).start()
        self._httpd = httpd

    def stop(self) -> None:
        """Stop listening, release waiting requests and reset kept-alive connections."""
        self.stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    @property
    def in_flight(self) -> int:
        """API requests received and not yet answered, across every tenant."""
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most API requests ever in flight at once: proof that slow answers overlap."""
        with self._lock:
            return self._peak_in_flight

    def reset_peak(self) -> None:
        with self._lock:
            self._peak_in_flight = self._in_flight

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)


class _FleetHTTPServer(TrackingHTTPServer):
    # Hundreds of sources may connect in the same instant; the single server's 128 would drop SYNs.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fleet: FleetServer) -> None:
        self.fleet = fleet
        super().__init__(address, _FleetHandler, fleet)


class _FleetHandler(_Handler):
    """The single simulator's handler (wire format, fault playing), routed by path prefix."""

    server: _FleetHTTPServer  # type: ignore[assignment]  # a fleet server, not a single simulator's
    tenant: Simulator | None = None

    def _dispatch(self) -> None:
        fleet = self.server.fleet
        try:
            with self.reporting_bugs():
                request = self._read_request()
                if request.path == THROTTLE_PATH:
                    self.send(answer_throttle_control(fleet.throttle, request))
                    return
                name, _, rest = request.path.lstrip("/").partition("/")
                tenant = fleet.tenants.get(name)
                if tenant is None:
                    self.send(Response(404, NO_SUCH_HOST_PAGE, "text/html"))
                    return
                self.tenant = tenant
                path = "/" + rest
                if path == CONTROL_PATH:
                    self.send(answer_fault_control(tenant.faults, request))
                elif path == EDIT_PATH:
                    self.send(_answer_edit(fleet.editor, name, request))
                else:
                    with self.edge(fleet.throttle, name, path) as admitted:
                        if admitted:
                            self._answer(fleet, tenant, dataclasses.replace(request, path=path))
        finally:
            self.tenant = None

    def _answer(self, fleet: FleetServer, tenant: Simulator, request: Request) -> None:
        if tenant.faults.spec.kind == "down":
            self._reset_connection()
            return
        decision = tenant.faults.decide(request.path)
        with fleet.serving():
            wait = fleet.latency_ms / 1000.0 + decision.latency_s
            if wait > 0 and fleet.stopping.wait(wait):
                self.close_connection = True
                return
            if tenant.before_request is not None:
                tenant.before_request(request)
            if decision.fault is None:
                self.send(tenant.handle(request))
            else:
                side = _TenantSide(fleet.stopping, tenant.faults)
                faultplay.play(self, decision.fault, request, tenant, side)

    def _reset_connection(self) -> None:
        # Closing with a zero linger sends RST: the client's request fails as a connection error.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The ``Date`` header follows the tenant's clock (skew included), as on its own server.
        if timestamp is None and self.tenant is not None:
            timestamp = self.tenant.now().timestamp()
        return email.utils.formatdate(timestamp, usegmt=True)


def _answer_edit(editor: Editor, name: str, request: Request) -> Response:
    """``POST /<name>/__edit__`` with ``{"id": 12, "fields": {...}}``; both are optional."""
    if request.method != "POST":
        return json_response(405, {"error": "use POST"})
    try:
        body = json.loads(request.body or b"{}")
        if not isinstance(body, dict) or set(body) - {"id", "fields"}:
            raise ValueError('the body must be a JSON object with "id" and/or "fields"')
        record_id, fields = body.get("id"), body.get("fields") or {}
        if (record_id is not None and type(record_id) is not int) or not isinstance(fields, dict):
            raise ValueError('"id" must be an integer and "fields" an object')
        return json_response(200, editor(name, record_id, fields))
    except KeyError as exc:
        return json_response(404, {"error": f"no such record: {exc.args[0] if exc.args else ''}"})
    except ValueError as exc:
        return json_response(400, {"error": str(exc)})
