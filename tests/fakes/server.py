"""A real HTTP server on 127.0.0.1 in a thread, for platform fakes and network-fault tests.

An app is a callable ``app(request) -> Reply``. Faults are injected per path prefix with
:meth:`FakeServer.inject`: the next matching requests get those replies instead of the app's.
Every request is recorded (method, path, query, headers, arrival time) for assertions.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    body: Any = b""  # bytes, str, or JSON-able
    headers: dict[str, str] = field(default_factory=dict)
    drip_s: float | None = None  # seconds between single bytes
    truncate_at: int | None = None  # close after this many body bytes (headers announce all)
    content_length: int | None = None  # lie about the length
    reset: bool = False  # RST the connection without answering
    delay_s: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def json_reply(body: Any, status: int = 200, **headers: str) -> Reply:
    hdrs = {"content-type": "application/json; charset=utf-8"}
    hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
    return Reply(status=status, body=body, headers=hdrs)


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status=status, headers={"location": location})


App = Callable[[Request], Reply]


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (timeouts, kills, fault tests) are expected here: no tracebacks."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class FakeServer:
    def __init__(self, app: App | None = None, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.app: App = app or (lambda request: Reply(404, "Not Found"))
        self.host, self._port = host, port  # another 127.x address stands in for another machine
        self.tls = tls  # a server-side context: the server speaks HTTPS
        self.requests: list[Request] = []
        self._faults: list[tuple[str, Reply]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                server._serve(self)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

        self._httpd = _QuietServer((self.host, self._port), Handler)
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    # ------------------------------------------------------------ faults and records

    def inject(self, path_prefix: str, *replies: Reply) -> None:
        with self._lock:
            self._faults.extend((path_prefix, r) for r in replies)

    def hits(self, path_prefix: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def _take_fault(self, path: str) -> Reply | None:
        with self._lock:
            for index, (prefix, reply) in enumerate(self._faults):
                if path.startswith(prefix):
                    del self._faults[index]
                    return reply
        return None

    # ------------------------------------------------------------ serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            handler.command,
            parts.path,
            {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            {k.lower(): v for k, v in handler.headers.items()},
            body,
            time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
        reply = self._take_fault(parts.path) or self.app(request)
        self._write(handler, reply)

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.reset:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        payload = reply.payload()
        try:
            handler.send_response(reply.status)
            headers = {k.lower(): v for k, v in reply.headers.items()}
            if "content-type" not in headers and payload:
                headers["content-type"] = "application/octet-stream"
            headers["content-length"] = str(reply.content_length if reply.content_length is not None else len(payload))
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            if handler.command == "HEAD":
                return
            if reply.truncate_at is not None:
                handler.wfile.write(payload[: reply.truncate_at])
                handler.wfile.flush()
                handler.close_connection = True
                return
            if reply.drip_s:
                for i in range(len(payload)):
                    handler.wfile.write(payload[i : i + 1])
                    handler.wfile.flush()
                    time.sleep(reply.drip_s)
                return
            handler.wfile.write(payload)
            if reply.content_length is not None and reply.content_length != len(payload):
                handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
