"""`destill3d-tui serve`: the same app in a browser, through textual-serve, behind a token gate.

textual-serve's :class:`~textual_serve.server.Server` runs one app process per browser websocket.
We keep its public request handlers (``handle_index`` is replaced: its URLs come from a fixed
``public_url``, which is wrong once the page is reached through another name or an SSH forward)
and mount them on our own aiohttp application, so no private internal is patched:

- ``token_gate``: a middleware in front of every route (page, websocket, static files,
  downloads). With a token, a request needs it as ``?token=`` (the first page load: the token
  is moved into an HttpOnly, SameSite=Strict cookie and the browser is redirected to ``/`` so
  the token leaves the address bar) or as that cookie (everything after, the websocket too,
  since textual.js appends its own ``?width=..`` to the websocket URL). Tokens are compared in
  constant time; a refusal is a bare 403 with no detail.
- Without a token (loopback only) the Host header must name a loopback address, so a web page
  on some other site cannot reach the server through DNS rebinding; and a websocket's Origin,
  when the browser sends one, must be the page's own, so another site's script cannot open a
  session (the cookie is SameSite=Strict for the same reason).
- On shutdown (SIGTERM, SIGINT) every session's app is asked to quit (SIGTERM: Textual's web
  driver turns it into a clean exit, the app's engine drains and closes the database), then
  awaited; one that does not finish in time is killed.

No ``textual`` import here: the server process does not run an app itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger("destill3d.serve")

TOKEN_ENV = "DESTILL3D_SERVE_TOKEN"
COOKIE = "destill3d_token"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8566
SESSION_QUIT_S = 40.0
"""How long a session's app may take to quit: the engine drains in-flight items within 30 s."""
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_token(host: str, given: str | None, require: bool = False) -> str | None:
    """The access token for a bind: the given one; a fresh one when the bind is not loopback only
    (or ``require``); ``None`` (no token) for a loopback bind nobody asked to protect."""
    if given:
        return given
    if require or not is_loopback(host):
        return secrets.token_urlsafe(24)
    return None


def token_matches(expected: str, offered: str | None) -> bool:
    """Constant-time comparison (``hmac.compare_digest``), so timing says nothing of the token."""
    if not offered:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8"))


def _host_of(value: str) -> str:
    """The host part of a Host header or an Origin URL, without the port."""
    if "://" in value:
        return urlsplit(value).hostname or ""
    return urlsplit(f"//{value}").hostname or ""


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or a same-origin navigation
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def token_gate(token: str | None) -> Any:
    """The aiohttp middleware that lets a request through only when it may drive the app."""

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_websocket(request) and not _same_origin(request):
            raise web.HTTPForbidden()
        if token is None:
            if not is_loopback(_host_of(request.host)):
                raise web.HTTPForbidden()
            return await handler(request)
        if token_matches(token, request.cookies.get(COOKIE)):
            return await handler(request)
        if request.path == "/" and token_matches(token, request.query.get("token")):
            return _enter(request, token)
        raise web.HTTPForbidden()

    return gate


def _enter(request: web.Request, token: str) -> web.StreamResponse:
    """First page load with the right ``?token=``: remember it in a cookie and drop it from the URL."""
    query = {k: v for k, v in request.query.items() if k != "token"}
    response = web.HTTPSeeOther(request.rel_url.with_query(query).human_repr() if query else "/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


@dataclass
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    title: str = "Destill3D"


def session_command(app_args: Sequence[str]) -> str:
    """The shell line textual-serve runs per browser session: this interpreter, the app without
    a pipeline (:mod:`destill3d_tui.serve_session` says why), on the server's database.

    ``exec`` makes the app the session's process itself (no shell in between), so a signal sent
    to it reaches Textual's driver.
    """
    return "exec " + shlex.join([sys.executable, "-m", "destill3d_tui.serve_session", *app_args])


class Sessions:
    """The browser sessions: their websocket handler tasks and the app processes behind them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    async def track(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            return await handler(request)
        finally:
            self.tasks.discard(task)

    async def close_all(self, quit_s: float = SESSION_QUIT_S) -> None:
        """Ask every app to quit, wait for its session to end, kill what is left after ``quit_s``.

        The processes are not waited on here (asyncio's child watcher reaps them; a second
        waiter would steal their exit status): their sessions end when they exit, and psutil
        only tells whether one is still running.
        """
        import psutil

        apps = psutil.Process().children(recursive=False)
        for proc in apps:
            _signal_quietly(proc, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + quit_s
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=quit_s)
        alive = await asyncio.to_thread(_running_after, apps, max(deadline - loop.time(), 1.0))
        for proc in alive:
            log.warning("session app %s did not quit in %.0f s: killed", proc.pid, quit_s)
            _signal_quietly(proc, signal.SIGKILL)
        for task in list(self.tasks):  # textual-serve's handler closes its websocket when cancelled
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)


def _running_after(procs: list[Any], timeout: float) -> list[Any]:
    """The processes still running (zombies count as ended) after up to ``timeout`` seconds."""
    import psutil

    end = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _running(p, psutil)]
        if not alive or time.monotonic() >= end:
            return alive
        time.sleep(0.1)


def _running(proc: Any, psutil: Any) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _signal_quietly(proc: Any, sig: int) -> None:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)


def build_web_app(command: str, options: ServeOptions) -> web.Application:
    """Our aiohttp application: textual-serve's handlers behind the token gate."""
    import aiohttp_jinja2
    import jinja2
    from textual_serve.server import Server

    server = Server(command, host=options.host, port=options.port, title=options.title)
    sessions = Sessions()
    app = web.Application(middlewares=[token_gate(options.token)])
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(server.templates_path))

    async def websocket(request: web.Request) -> web.StreamResponse:
        return await sessions.track(server.handle_websocket, request)

    app.add_routes([
        web.get("/", _index(options.title), name="index"),
        web.get("/ws", websocket, name="websocket"),
        web.get("/download/{key}", server.handle_download, name="download"),
        web.static("/static", server.statics_path, name="static"),
    ])

    async def shutdown(_: web.Application) -> None:
        await sessions.close_all()

    app.on_shutdown.append(shutdown)
    app["sessions"] = sessions
    return app


def _index(title: str) -> Handler:
    """The page, with URLs from the request's own Host (the name the browser used)."""
    import aiohttp_jinja2

    async def index(request: web.Request) -> web.StreamResponse:
        scheme = "wss" if request.secure else "ws"
        context = {
            "font_size": _font_size(request.query.get("fontsize", "16")),
            "app_websocket_url": f"{scheme}://{request.host}/ws",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": title},
        }
        response = aiohttp_jinja2.render_template("app_index.html", request, context)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return index


def _font_size(value: str) -> int:
    try:
        return min(max(int(value), 6), 48)
    except ValueError:
        return 16


def serve(command: str, options: ServeOptions, announce: Callable[[str], None]) -> int:
    """Serve until SIGTERM or SIGINT; every session's app is closed before this returns 0."""
    os.environ.pop(TOKEN_ENV, None)  # the session apps do not need it
    app = build_web_app(command, options)
    url = f"http://{_url_host(options.host)}:{options.port}/"
    announce(f"serving Destill3D on {url}" + (f"?token={options.token}" if options.token else ""))
    web.run_app(app, host=options.host, port=options.port, print=None, handle_signals=True,
                shutdown_timeout=SESSION_QUIT_S + 5)
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
