"""A file CDN in front of a fake platform: its file answers become a redirect chain to another host.

``RedirectingCDN().front(origin, "/files/")`` wraps ``origin.app``: a ``200`` answer under that
path prefix is kept here and the client gets ``302 -> cdn/signed/<n>``, which answers
``302 -> /blob/<n>`` (same host), which serves the kept answer. The platform still checks its own
auth on the first hop; the CDN hops carry none, as on the real sites.
"""

from __future__ import annotations

import itertools
import threading

from tests.fakes.server import FakeServer, Reply, Request, redirect


class RedirectingCDN:
    def __init__(self) -> None:
        self.server = FakeServer(self.app)
        self._kept: dict[int, Reply] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def __enter__(self) -> RedirectingCDN:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def hostport(self) -> str:
        return self.server.hostport

    def front(self, origin: FakeServer, prefix: str) -> None:
        """Serve ``origin``'s ``200`` answers under ``prefix`` through this CDN's two redirects."""
        inner = origin.app

        def app(request: Request) -> Reply:
            reply = inner(request)
            if not request.path.startswith(prefix) or reply.status != 200:
                return reply
            with self._lock:
                key = next(self._ids)
                self._kept[key] = reply
            return redirect(f"{self.server.url}/signed/{key}")

        origin.app = app

    def app(self, request: Request) -> Reply:
        kind, _, key = request.path.strip("/").partition("/")
        if kind == "signed":
            return redirect(f"/blob/{key}")  # relative: the next hop stays on this host
        with self._lock:
            reply = self._kept.get(int(key)) if kind == "blob" and key.isdigit() else None
        return reply or Reply(404, "Not Found")
