"""In-process collaborators for the upstream tests: a scripted HTTP server on a real socket, a
counting breaker and a recording event log."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from worker.infra.errors import CircuitOpenError, counts_as_breaker_failure

KEY = "ck_0123456789abcdef0123456789abcdef"
SECRET = "cs_fedcba9876543210fedcba9876543210"
ODOO_KEY = "odoo-api-key-5f1c2d3e4b5a69788796"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    # Send this Content-Length (None: the real length, or chunked for an iterable body).
    content_length: int | None = None
    delay: float = 0.0


Handler = Callable[[Request], Reply]


class ScriptedServer:
    """A real HTTP server whose replies come from ``handler``; ``queue`` replies are served first."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.queue: list[Reply] = []
        self.requests: list[Request] = []
        self.bytes_sent = 0
        self.lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    self.command,
                    parts.path,
                    dict(parse_qsl(parts.query, keep_blank_values=True)),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with outer.lock:
                    outer.requests.append(req)
                    reply = outer.queue.pop(0) if outer.queue else None
                reply = reply or outer.handler(req)
                if reply.delay:
                    threading.Event().wait(reply.delay)
                try:
                    self._write(reply)
                except OSError:  # the client hung up (timeout, size limit): expected here
                    self.close_connection = True

            def _write(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if isinstance(reply.body, bytes):
                    n = reply.content_length if reply.content_length is not None else len(reply.body)
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    self._send(reply.body)
                    if n != len(reply.body):
                        self.close_connection = True
                    return
                if reply.content_length is not None:
                    self.send_header("Content-Length", str(reply.content_length))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in reply.body:
                    if reply.content_length is not None:
                        self._send(chunk)
                    else:
                        self._send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if reply.content_length is None:
                    self._send(b"0\r\n\r\n")

            def _send(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                with outer.lock:
                    outer.bytes_sent += len(data)

            do_GET = _serve
            do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeBreaker:
    """Opens after ``threshold`` consecutive breaker failures; refuses calls while open."""

    def __init__(self, threshold: int = 1000) -> None:
        self.threshold = threshold
        self.failures = 0
        self.calls = 0
        self.refused = 0
        self.is_open = False
        self.lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            if self.is_open:
                self.refused += 1
                raise CircuitOpenError("test", 30.0)
            self.calls += 1
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if counts_as_breaker_failure(exc):
                with self.lock:
                    self.failures += 1
                    self.is_open = self.failures >= self.threshold
            raise
        with self.lock:
            self.failures = 0
        return result

    def state(self) -> str:
        return "open" if self.is_open else "closed"


@dataclass
class Event:
    event_type: str
    correlation_id: str | None
    payload: dict[str, Any]
    metadata: dict[str, Any]


class FakeEventLog:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def record(
        self,
        event_type: str,
        *,
        aggregate_id: str | None = None,
        correlation_id: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        with self.lock:
            self.events.append(Event(event_type, correlation_id, payload or {}, metadata or {}))


def chunks(total: int, size: int = 65536) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


class FakeWoo:
    """Just enough of ``/wp-json/wc/v3/products`` to page, filter and authenticate."""

    def __init__(self, count: int, *, trashed: int = 0, send_totals: bool = True) -> None:
        self.products = [
            {"id": i, "name": f"P{i}", "status": "trash" if i <= trashed else "publish",
             "date_modified_gmt": f"2026-01-{1 + i % 28:02d}T10:00:00"}
            for i in range(1, count + 1)
        ]  # fmt: skip
        self.send_totals = send_totals

    def __call__(self, req: Request) -> Reply:
        import base64
        import json

        auth = req.headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
        by_query = req.query.get("consumer_key") == KEY and req.query.get("consumer_secret") == SECRET
        if auth != basic and not by_query:
            body = {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.",
                    "data": {"status": 401}}  # fmt: skip
            return Reply(401, {"Content-Type": "application/json"}, json.dumps(body).encode())
        q = req.query
        items = self.products
        if req.path.endswith("/variations"):
            parent = int(req.path.split("/")[-2])
            items = [{"id": parent * 1000 + i, "parent_id": parent} for i in range(1, 151)]
        status = q.get("status", "any")
        if status == "any":
            items = [p for p in items if p.get("status") != "trash"]
        elif "status" in q:
            items = [p for p in items if p.get("status") == status]
        if "modified_after" in q:
            items = [p for p in items if p["date_modified_gmt"] > q["modified_after"]]
        per_page, page = int(q.get("per_page", 10)), int(q.get("page", 1))
        total = len(items)
        chosen = items[(page - 1) * per_page : page * per_page]
        if q.get("_fields") == "id":
            chosen = [{"id": p["id"]} for p in chosen]
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        if self.send_totals:
            headers["X-WP-Total"] = str(total)
            headers["X-WP-TotalPages"] = str(-(-total // per_page))
        return Reply(200, headers, json.dumps(chosen).encode())
