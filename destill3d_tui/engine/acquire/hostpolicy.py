"""Where requests may go, and a connection that goes only to the address that was checked.

- :class:`HostPolicy`: a platform's allowed hosts (default ports, or ``host:port`` entries) and
  the explicitly allowed ``host:port`` pairs (``acquisition.allow_hosts``, a configured base URL)
  that may be private.
- :func:`resolve` looks a host up once; :class:`PinnedBackend` (an httpcore network backend)
  connects only to addresses pinned for that host by the check, never resolving again. A host
  that answers a public address when checked and a private one when connected (DNS rebinding)
  therefore cannot reach the private one. TLS still starts with the original hostname (SNI and
  certificate verification), because httpcore passes it to ``start_tls`` itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from ..errors import DownloadError
from .credentials import redact


@dataclass
class HostPolicy:
    """Where a platform's requests may go."""

    hostnames: set[str] = field(default_factory=set)  # default ports (or "host:port"), must be public
    explicit: set[str] = field(default_factory=set)  # "host:port", private allowed

    def allows(self, url: httpx.URL) -> tuple[bool, bool]:
        """(allowed by name, explicitly allowed) for this URL."""
        hostport = f"{url.host}:{port_of(url)}"
        if hostport in self.explicit:
            return True, True
        if hostport in self.hostnames:
            return True, False
        default = port_of(url) == (443 if url.scheme == "https" else 80)
        named = url.host in self.hostnames or any(
            h.startswith("*.") and url.host.endswith(h[1:]) for h in self.hostnames
        )
        return named and default, False


def port_of(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def origin_of(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{port_of(url)}"


def ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def is_private(address: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified (IPv4-mapped IPv6 unwrapped)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return bool(
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def os_cause(exc: BaseException) -> str:
    """The operating system's words for why a connection failed ("Connection refused"), else ``exc``'s."""
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS certificate refused: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return f"TLS failed: {current.reason or current}"
        if isinstance(current, OSError) and current.errno:
            return os.strerror(current.errno)
        pending += list(getattr(current, "exceptions", ()))  # an ExceptionGroup of several attempts
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return str(exc) or type(exc).__name__


def checked_addresses(platform: str, url: httpx.URL, addresses: list[str], *, explicit: bool) -> list[str]:
    """``addresses`` unless one is private and the host:port was not explicitly allowed."""
    if not explicit and any(is_private(address) for address in addresses):
        raise DownloadError(
            f"{platform}: host {url.host} resolves to a private/loopback/link-local address "
            "(allow it with acquisition.allow_hosts)",
            url=redact(str(url)), reason="host_not_allowed", kind="permanent",
        )
    return addresses


def connection_error(platform: str, url: httpx.URL, why: str) -> DownloadError:
    """A failure to reach a host at all: reported at once (``retry = False``), never backed off."""
    error = DownloadError(f"{platform}: cannot connect to {url.host}:{port_of(url)}: {why}",
                          url=redact(str(url)), reason="connection_failed")
    error.retry = False  # type: ignore[attr-defined]  # nothing reached the platform: no back-off
    return error


async def resolve(platform: str, url: httpx.URL) -> list[str]:
    """The host's addresses, looked up once (an IP literal is its own answer)."""
    host = url.host
    if ip_literal(host):
        return [host]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port_of(url), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise connection_error(platform, url, f"DNS lookup failed ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise connection_error(platform, url, "DNS lookup returned no address")
    return addresses


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects a hostname only to the addresses :meth:`pin` recorded for it when it was checked."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()
        self._pins: dict[tuple[str, int], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def pin(self, host: str, port: int, addresses: Iterable[str]) -> None:
        with self._lock:
            self._pins[(host.lower(), port)] = tuple(addresses)

    def pinned(self, host: str, port: int) -> tuple[str, ...]:
        with self._lock:
            return self._pins.get((host.lower(), port), ())

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        addresses = (host,) if ip_literal(host) else self.pinned(host, port)
        if not addresses:  # every URL passes the check first; anything else is refused
            raise httpcore.ConnectError(f"{host}:{port} was not checked before connecting")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise type(failure)(os_cause(failure)) from failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for platform requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(backend: PinnedBackend, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through ``backend``.

    httpx 0.2x does not take a network backend, so the pool's is replaced (the attribute httpcore
    reads when it opens a connection); the assertion fails loudly if a new release renames it.
    """
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    assert hasattr(pool, "_network_backend"), "httpcore changed: cannot pin connections"
    pool._network_backend = backend
    return transport
