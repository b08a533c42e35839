"""A threaded loopback HTTP server base that the simulators share.

The server owns the socket life cycle (start, stop, "down" and back up on the same port) and the
fault machinery; a simulator only turns a ``Request`` into a ``Response`` and says what its faults
look like. Connections are HTTP/1.1 keep-alive with exact Content-Length, like a real upstream.
"""

from __future__ import annotations

import abc
import contextlib
import email.utils
import json
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from worker.sandbox import faultplay
from worker.sandbox.faults import FaultInjector, FaultSpec, FaultSpecError
from worker.sandbox.throttle import (
    THROTTLE_PATH,
    HostThrottle,
    answer_throttle_control,
    throttle_response,
)
from worker.sandbox.wire import Request, Response, json_response

__all__ = ["CONTROL_PATH", "Request", "Response", "Simulator", "answer_fault_control", "json_response"]

CONTROL_PATH = "/__faults__"


class Simulator(abc.ABC):
    """Base of the upstream simulators: a context manager around a loopback server."""

    def __init__(
        self,
        *,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
        throttle: HostThrottle | None = None,
    ) -> None:
        self.faults = faults if faults is not None else FaultInjector()
        # The host's hidden rate limit in front of this upstream (off unless set); a fleet replaces it
        # with its own, since all its tenants are one host.
        self.throttle = throttle if throttle is not None else HostThrottle()
        self._server = _ServerControl(self, host, port)
        self._base_clock = clock or (lambda: datetime.now(UTC))
        # The upstream's clock is its own: real servers drift hours from the worker's, and every
        # timestamp they stamp and every ``Date`` header they send follows their clock, not ours.
        self.skew = timedelta(0)
        # Called with each API request before it is answered: a test mutates the catalog here to
        # model activity landing *between* the page requests of a running sync.
        self.before_request: Callable[[Request], None] | None = None
        # Set when another server (a fleet) answers for this simulator under a path prefix.
        self._mounted_url: str | None = None

    def now(self) -> datetime:
        """The upstream's clock (the base clock plus ``skew``)."""
        return self._base_clock() + self.skew

    @abc.abstractmethod
    def handle(self, request: Request) -> Response:
        """Answer one request as the real upstream would."""

    @abc.abstractmethod
    def fault_response(self, fault: FaultSpec, request: Request) -> Response:
        """The upstream's own look for ``status``, ``html200`` and ``auth`` faults."""

    @abc.abstractmethod
    def oversized_parts(self, request: Request) -> tuple[bytes, bytes, bytes, str]:
        """(head, repeated unit, tail, content type) of a valid-looking huge body."""

    def on_started(self) -> None:  # noqa: B027 - optional hook, most simulators need nothing
        """Hook for simulators whose payloads embed their own URL."""

    @property
    def base_url(self) -> str:
        if self._mounted_url is not None:
            return self._mounted_url
        return f"http://{self._server.host}:{self.port}"

    def mount(self, base_url: str) -> None:
        """Be served by another server at ``base_url`` instead of listening on a port of its own."""
        self._mounted_url = base_url.rstrip("/")
        self.on_started()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def is_down(self) -> bool:
        return self._server.is_down

    def start(self) -> Self:
        self._server.start()
        self.on_started()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threaded server that reports every connection to ``tracker``, so stopping can close them all."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, tracker: Any) -> None:
        self.tracker = tracker
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.tracker.track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.tracker.untrack(request)
        super().shutdown_request(request)


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], control: _ServerControl) -> None:
        self.control = control
        super().__init__(address, _Handler, control)


class _ServerControl:
    """Socket life cycle: listen, stop, go down (refuse connections) and come back on the same port."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self.stopping = threading.Event()
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._local = threading.local()
        self._started = False

    @property
    def faults(self) -> FaultInjector:
        return self.simulator.faults

    @property
    def is_down(self) -> bool:
        with self._lock:
            return self._started and self._httpd is None

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self.stopping.clear()
            self._listen()
            self._started = True
        self.faults.subscribe(self._on_fault)

    def stop(self) -> None:
        self.faults.unsubscribe(self._on_fault)
        with self._lock:
            self._started = False
            self.stopping.set()
            self._close_listener()
            self._drop_connections()

    def _listen(self) -> None:
        httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"sandbox-{type(self.simulator).__name__}-{self.port}",
        )
        thread.start()
        self._httpd, self._thread = httpd, thread

    def _close_listener(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def _on_fault(self, spec: FaultSpec) -> None:
        with self._lock:
            if not self._started:
                return
            if spec.kind == "down" and self._httpd is not None:
                self._close_listener()
                self._drop_connections()
            elif spec.kind != "down" and self._httpd is None:
                self._listen()

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    def set_current(self, conn: socket.socket | None) -> None:
        self._local.conn = conn

    def _drop_connections(self) -> None:
        # A server that goes down also resets its kept-alive connections, except the one that is
        # answering the control request that brought it down.
        current = getattr(self._local, "conn", None)
        for conn in list(self._conns):
            if conn is current:
                continue
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this many seconds, so threads do not pile up.
    timeout = 60
    server: _HTTPServer
    # The status line of the latest answer on this connection, for the host's arrival log.
    sent_status: int | None = None

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle plus delayed ACKs add
        # ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "nginx"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; tests count requests through the fault injector."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_request(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        return Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            raw_query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )

    def _dispatch(self) -> None:
        control = self.server.control
        control.set_current(self.connection)
        try:
            with self.reporting_bugs():
                request = self._read_request()
                if request.path == THROTTLE_PATH:
                    self.send(answer_throttle_control(control.simulator.throttle, request))
                    return
                if request.path == CONTROL_PATH:
                    response = self._control(request)
                    if control.is_down:
                        # A server that was just taken down keeps no connection open, this one included.
                        response.headers.append(("Connection", "close"))
                    self.send(response)
                    return
                if control.is_down:
                    self.close_connection = True  # a kept-alive connection that raced the shutdown
                    return
                with self.edge(control.simulator.throttle, "", request.path) as admitted:
                    if admitted:
                        self._answer_api(control, request)
        finally:
            control.set_current(None)

    def _answer_api(self, control: _ServerControl, request: Request) -> None:
        decision = control.faults.decide(request.path)
        if decision.latency_s > 0 and control.stopping.wait(decision.latency_s):
            self.close_connection = True
            return
        hook = control.simulator.before_request
        if hook is not None:
            hook(request)
        if decision.fault is None:
            self.send(control.simulator.handle(request))
        else:
            faultplay.play(self, decision.fault, request, control.simulator, control)

    @contextlib.contextmanager
    def edge(self, throttle: HostThrottle, tenant: str, path: str) -> Iterator[bool]:
        """The host's rate limit in front of the upstream: yields False when it already answered 429.

        Every API request is logged with the status that went out once the body below is done.
        """
        admission = throttle.admit(tenant, path)
        self.sent_status = None
        try:
            if admission.throttled:
                self.send(throttle_response(admission))
            yield not admission.throttled
        finally:
            throttle.done(admission, self.sent_status)

    @contextlib.contextmanager
    def reporting_bugs(self) -> Iterator[None]:
        """A peer that hung up ends the connection; a simulator bug is loud and never looks like an
        upstream's own 500 page."""
        try:
            yield
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send(Response(500, b"sandbox simulator bug, see stderr", "text/x-sandbox-error"))

    def _control(self, request: Request) -> Response:
        return answer_fault_control(self.server.control.faults, request)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The ``Date`` header follows the simulated upstream's clock, skew included.
        when = self.server.control.simulator.now() if timestamp is None else None
        return email.utils.formatdate(when.timestamp() if when else timestamp, usegmt=True)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.sent_status = code
        super().send_response(code, message)

    def send(self, response: Response, *, declared_length: int | None = None) -> None:
        """Write status, headers and body; ``declared_length`` lets a fault lie about the length."""
        self.send_head(response, len(response.body) if declared_length is None else declared_length)
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def send_head(self, response: Response, length: int | None) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()


def answer_fault_control(faults: FaultInjector, request: Request) -> Response:
    """``/__faults__``: GET shows the fault and counters, POST sets a fault, DELETE clears it."""
    if request.method == "DELETE":
        faults.clear()
        return json_response(200, faults.snapshot())
    if request.method == "POST":
        try:
            options = json.loads(request.body or b"{}")
            if not isinstance(options, dict):
                raise FaultSpecError("the body must be a JSON object")
            faults.set(**options)
        except (ValueError, FaultSpecError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, faults.snapshot())
    if request.method == "GET":
        return json_response(200, faults.snapshot())
    return json_response(405, {"error": "use GET, POST or DELETE"})
