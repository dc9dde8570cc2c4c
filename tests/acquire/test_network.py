"""No network, or a lying resolver: fail at once with the real cause; connect only where we checked.

Run at the SHIPPED acquisition settings (back-off 15 s, budgets as shipped): a connection that
cannot be made is reported within 2 s as ``connection_failed`` naming DNS or the refusal, never
backed off and never blamed on a rate budget. The DNS-rebinding test uses a resolver stub that
answers a "public" address when the host is checked and a private one on any later lookup.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from destill3d_tui.engine.acquire import hostpolicy
from destill3d_tui.engine.acquire.base import RateLimit, SearchFilters
from destill3d_tui.engine.acquire.http import HttpClient
from destill3d_tui.engine.acquire.platforms.sketchfab import SketchfabAdapter  # a shipped budget: 1/s
from destill3d_tui.engine.acquire.registry import get_adapter
from destill3d_tui.engine.config import PlatformSettings, Settings
from destill3d_tui.engine.errors import AcquisitionError, DownloadError
from tests.fakes.server import FakeServer, Reply

FAST_S = 2.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shipped(*allow: str) -> Settings:
    settings = Settings()
    settings.acquisition.allow_hosts = list(allow)
    return settings


def test_refused_connection_fails_fast_with_that_reason() -> None:
    port = closed_port()
    client = HttpClient(shipped())
    client.register("fake", rate_limit=RateLimit(1, 1), hosts=[], base_url=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        asyncio.run(client.request("fake", "GET", f"http://127.0.0.1:{port}/api"))
    assert time.monotonic() - started < FAST_S
    assert info.value.reason == "connection_failed" and "refused" in str(info.value).lower()
    assert client.bucket("fake").status().tokens >= 1.0  # nothing reached the platform: its slot is back


def test_unknown_host_fails_fast_naming_dns() -> None:
    hostport = "no-such-host.invalid:8080"
    client = HttpClient(shipped(hostport))
    client.register("fake", rate_limit=RateLimit(1, 1), hosts=[])
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        asyncio.run(client.request("fake", "GET", f"http://{hostport}/api"))
    assert time.monotonic() - started < FAST_S
    assert info.value.reason == "connection_failed" and "dns" in str(info.value).lower()


def test_github_search_without_network_names_the_connection_not_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("destill3d_tui.engine.acquire.credentials.get", lambda *a, **k: None)
    base = f"http://127.0.0.1:{closed_port()}"
    settings = shipped()
    settings.platforms["github"] = PlatformSettings(base_url=base)  # unauthenticated: 60 requests per hour
    adapter = get_adapter("github", settings)
    started = time.monotonic()
    with pytest.raises(AcquisitionError) as info:
        asyncio.run(adapter.search("gripper", SearchFilters()))
    assert time.monotonic() - started < FAST_S
    assert info.value.reason == "connection_failed"
    assert "budget" not in str(info.value) and "refused" in str(info.value).lower()


# ---------------------------------------------------------------- DNS rebinding


@pytest.fixture
def two_hosts() -> Iterator[tuple[FakeServer, FakeServer]]:
    """A "public" server on 127.0.0.2 and a private one on 127.0.0.1, both on the same port."""
    ok = lambda request: Reply(body=b"public")  # noqa: E731
    for _ in range(20):
        public = FakeServer(ok, host="127.0.0.2").start()
        try:
            private = FakeServer(lambda request: Reply(body=b"private"), port=public.port).start()
        except OSError:  # the port is taken on 127.0.0.1: try another
            public.stop()
            continue
        yield public, private
        public.stop()
        private.stop()
        return
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


def test_connection_goes_to_the_address_that_was_checked(two_hosts: tuple[FakeServer, FakeServer],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    public, private = two_hosts
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes IDNA-encoded bytes
        if name != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(name)
        address = "127.0.0.2" if len(lookups) == 1 else "127.0.0.1"  # public when checked, private after
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver)
    # 127.0.0.2 stands for a public address in this test; every other private address stays private
    real_is_private = hostpolicy.is_private
    monkeypatch.setattr(hostpolicy, "is_private", lambda address: address != "127.0.0.2" and real_is_private(address))
    client = HttpClient(shipped())
    client.register("fake", rate_limit=SketchfabAdapter.default_rate_limit, hosts=[f"rebind.test:{public.port}"])
    response = asyncio.run(client.request("fake", "GET", f"http://rebind.test:{public.port}/x"))
    assert response.content == b"public"
    assert private.requests == [] and len(public.requests) == 1
    assert public.requests[0].headers["host"] == f"rebind.test:{public.port}"
    assert lookups == ["rebind.test"]  # resolved once: the check's answer is the one connected to


def test_a_host_resolving_private_is_refused_before_connecting(two_hosts: tuple[FakeServer, FakeServer],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    public, private = two_hosts
    real_getaddrinfo = socket.getaddrinfo
    loopback = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", public.port))
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
        [loopback] if host in ("rebind.test", b"rebind.test") else real_getaddrinfo(host, port, *a, **k)))
    client = HttpClient(shipped())
    client.register("fake", rate_limit=SketchfabAdapter.default_rate_limit, hosts=[f"rebind.test:{public.port}"])
    with pytest.raises(DownloadError) as info:
        asyncio.run(client.request("fake", "GET", f"http://rebind.test:{public.port}/x"))
    assert info.value.reason == "host_not_allowed"
    assert private.requests == [] and public.requests == []


def test_tls_is_verified_against_the_hostname_while_connecting_to_the_checked_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.tls import issue

    ca_file, context = issue(tmp_path, "files.tls.test")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    with FakeServer(lambda request: Reply(body=b"over tls"), tls=context) as server:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # trust the test CA, as a corporate CA would be
        real_getaddrinfo = socket.getaddrinfo
        answer = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port))
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
            [answer] if host in ("files.tls.test", b"files.tls.test") else real_getaddrinfo(host, port, *a, **k)))
        client = HttpClient(shipped(f"files.tls.test:{server.port}", f"wrong.tls.test:{server.port}"))
        client.register("fake", rate_limit=SketchfabAdapter.default_rate_limit, hosts=[])
        response = asyncio.run(client.request("fake", "GET", f"https://files.tls.test:{server.port}/x"))
        assert response.content == b"over tls" and names == ["files.tls.test"]
        # the certificate names files.tls.test only: the same address under another name is refused
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [answer])
        with pytest.raises(DownloadError) as info:
            asyncio.run(client.request("fake", "GET", f"https://wrong.tls.test:{server.port}/x"))
        assert info.value.reason == "connection_failed" and "certificate" in str(info.value).lower()
