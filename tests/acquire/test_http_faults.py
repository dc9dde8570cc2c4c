"""Network faults against a real loopback server: each ends with its reason code and no partial file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire.base import RateLimit
from destill3d_tui.engine.acquire.http import HttpClient
from destill3d_tui.engine.acquire.platforms.sketchfab import SketchfabAdapter  # a shipped budget: 1/s
from destill3d_tui.engine.errors import DownloadError, PlatformError, RateLimitError
from destill3d_tui.engine.events import RateBudgetChanged
from tests.acquire.conftest import quick_settings
from tests.fakes.server import FakeServer, Reply, json_reply, redirect

PAYLOAD = bytes(range(256)) * 40  # 10 240 bytes


SHIPPED_LIMIT = SketchfabAdapter.default_rate_limit


def client_for(server: FakeServer, *extra_allow: str, limit: RateLimit = SHIPPED_LIMIT, **acq: object):
    events: list[object] = []
    settings = quick_settings(server.hostport, *extra_allow, **acq)
    client = HttpClient(settings, emit=events.append)
    client.register("fake", rate_limit=limit, hosts=[], base_url=server.url, credential="tok-123")
    return client, events


def file_app(request):  # type: ignore[no-untyped-def]
    if request.path.startswith("/file"):
        return Reply(body=PAYLOAD)
    return json_reply({"ok": True, "path": request.path})


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def no_files(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


# ---------------------------------------------------------------- throttling


def test_429_without_retry_after_backs_off_then_succeeds(server: FakeServer) -> None:
    server.app = file_app
    server.inject("/api", Reply(429, "slow down"), Reply(429, ""))
    client, events = client_for(server)
    started = time.monotonic()
    response = run(client.request("fake", "GET", server.url + "/api/x"))
    assert response.json()["ok"] is True
    assert len(server.hits("/api")) == 3
    assert time.monotonic() - started >= 0.05 + 0.1  # two exponential back-offs
    assert any(isinstance(e, RateBudgetChanged) for e in events)


def test_429_with_retry_after_waits_that_long(server: FakeServer) -> None:
    server.app = file_app
    server.inject("/api", Reply(429, "", headers={"retry-after": "1"}))
    client, _ = client_for(server)
    run(client.request("fake", "GET", server.url + "/api/x"))
    hits = server.hits("/api")
    assert len(hits) == 2
    assert hits[1].at - hits[0].at >= 0.95


def test_429_with_long_retry_after_pauses_platform_instead_of_sleeping(server: FakeServer) -> None:
    server.app = file_app
    server.inject("/api", Reply(429, "", headers={"retry-after": "3600"}))
    client, _ = client_for(server)
    with pytest.raises(RateLimitError) as info:
        run(client.request("fake", "GET", server.url + "/api/x"))
    assert info.value.reason == "rate_limited"
    assert info.value.retry_after and info.value.retry_after > 3000
    # the next call does not touch the server while the platform is paused
    with pytest.raises(RateLimitError):
        run(client.request("fake", "GET", server.url + "/api/y"))
    assert len(server.hits("/api")) == 1
    assert client.bucket("fake").status().paused_until is not None


def test_429_forever_gives_rate_limited_after_bounded_attempts(server: FakeServer) -> None:
    server.app = lambda request: Reply(429, "")
    client, _ = client_for(server)
    with pytest.raises(RateLimitError) as info:
        run(client.request("fake", "GET", server.url + "/api/x"))
    assert info.value.reason == "rate_limited"
    assert len(server.hits("/api")) == 3


def test_github_style_reset_headers_are_honoured(server: FakeServer) -> None:
    server.app = file_app
    reset = str(int(time.time()) + 2)  # an epoch second 1-2 s ahead
    server.inject("/api", json_reply({"message": "API rate limit exceeded"}, 403, x_ratelimit_remaining="0",
                                     x_ratelimit_reset=reset))
    client, _ = client_for(server)
    run(client.request("fake", "GET", server.url + "/api/x"))
    hits = server.hits("/api")
    epoch = time.time() - time.monotonic()  # hits are stamped on the monotonic clock
    # not before the reset second (less 50 ms of clock granularity), however slow the first answer was
    assert len(hits) == 2 and hits[1].at + epoch >= int(reset) - 0.05


# ---------------------------------------------------------------- bans and server errors


def test_html_403_is_a_ban_that_pauses_the_platform(server: FakeServer) -> None:
    server.app = lambda request: Reply(403, "<html><body>Access denied</body></html>",
                                       headers={"content-type": "text/html"})
    client, events = client_for(server)
    with pytest.raises(PlatformError) as info:
        run(client.request("fake", "GET", server.url + "/api/x"))
    assert info.value.reason == "banned"
    assert any(isinstance(e, RateBudgetChanged) and e.banned for e in events)
    with pytest.raises(PlatformError) as again:
        run(client.request("fake", "GET", server.url + "/api/other"))
    assert again.value.reason == "banned"
    assert len(server.hits()) == 1  # no hammering after the ban
    assert client.bucket("fake").status().banned


def test_repeated_json_403_on_different_items_becomes_a_ban(server: FakeServer) -> None:
    server.app = lambda request: json_reply({"error": "Forbidden"}, 403)
    client, _ = client_for(server)
    reasons = []
    for n in range(3):
        with pytest.raises(PlatformError) as info:
            run(client.request("fake", "GET", server.url + f"/things/{n}"))
        reasons.append(info.value.reason)
    assert reasons == ["forbidden", "forbidden", "banned"]


def test_5xx_burst_is_retried(server: FakeServer) -> None:
    server.app = file_app
    server.inject("/api", Reply(503, "busy"), Reply(502, "bad gateway"))
    client, _ = client_for(server)
    assert run(client.request("fake", "GET", server.url + "/api/x")).status == 200
    assert len(server.hits("/api")) == 3


def test_5xx_forever_is_platform_error(server: FakeServer) -> None:
    server.app = lambda request: Reply(500, "oops")
    client, _ = client_for(server)
    with pytest.raises(PlatformError) as info:
        run(client.request("fake", "GET", server.url + "/api/x"))
    assert info.value.reason == "platform_error" and info.value.status_code == 500
    assert len(server.hits()) == 3


def test_secrets_never_appear_in_errors(server: FakeServer) -> None:
    server.app = lambda request: json_reply({"error": "Unauthorized"}, 401)
    client, _ = client_for(server)
    with pytest.raises(PlatformError) as info:
        run(client.request("fake", "GET", server.url + "/api/x", params={"access_token": "s3cr3t-value"},
                           auth={"Authorization": "Bearer s3cr3t-value"}))
    assert info.value.reason == "auth_failed"
    assert "s3cr3t-value" not in str(info.value)


# ---------------------------------------------------------------- downloads


def test_download_streams_hashes_and_renames(server: FakeServer, tmp_path: Path) -> None:
    import hashlib

    server.app = file_app
    client, _ = client_for(server)
    result = run(client.download("fake", server.url + "/file/a.stl", tmp_path, "a.stl", expected_size=len(PAYLOAD)))
    assert result.path == tmp_path / "a.stl" and result.path.read_bytes() == PAYLOAD
    assert result.sha256 == hashlib.sha256(PAYLOAD).hexdigest() and result.size == len(PAYLOAD)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.stl"]


def test_connection_reset_is_connection_failed(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(reset=True)
    client, _ = client_for(server)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "connection_failed"
    assert len(server.hits()) == 3
    assert no_files(tmp_path / "item")


def test_slow_drip_is_cut_off(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(body=b"x" * 200, drip_s=0.05)  # 20 bytes/s
    client, _ = client_for(server, retry_attempts=1)
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 4.0  # not the 10 s it would take to drip everything
    assert no_files(tmp_path / "item")


def test_total_deadline_bounds_a_drip(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(body=b"x" * 200, drip_s=0.02)  # fast enough for the rate check
    client, _ = client_for(server, retry_attempts=1, download_deadline_s=1.0, min_download_bytes_per_s=1)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "timeout"
    assert no_files(tmp_path / "item")


def test_truncated_body(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(body=PAYLOAD, truncate_at=1000)
    client, _ = client_for(server)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "truncated"
    assert no_files(tmp_path / "item")


def test_wrong_content_length(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(body=PAYLOAD, content_length=len(PAYLOAD) + 500)
    client, _ = client_for(server)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "truncated"
    assert no_files(tmp_path / "item")


def test_size_disagreeing_with_platform_is_truncated(server: FakeServer, tmp_path: Path) -> None:
    server.app = file_app
    client, _ = client_for(server, retry_attempts=1)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl", expected_size=99))
    assert info.value.reason == "truncated"
    assert no_files(tmp_path / "item")


def test_size_cap(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(body=b"\0" * (2 * 1024 * 1024 + 10))
    client, _ = client_for(server, max_download_mb=1)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "too_large"
    assert no_files(tmp_path / "item")


def test_expired_url_is_refetched_once(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: (Reply(body=PAYLOAD) if request.query.get("sig") == "fresh"
                                  else Reply(403, "<Error>Request has expired</Error>"))
    client, _ = client_for(server)
    calls = []

    async def refetch() -> str:
        calls.append(1)
        return server.url + "/file/a.stl?sig=fresh"

    result = run(client.download("fake", server.url + "/file/a.stl?sig=old", tmp_path, "a.stl", refetch=refetch))
    assert result.path.read_bytes() == PAYLOAD and calls == [1]


def test_expired_url_twice_is_expired_url(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: Reply(410, "gone")
    client, _ = client_for(server)

    async def refetch() -> str:
        return server.url + "/file/a.stl?sig=still-old"

    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl?sig=old", tmp_path / "item", "a.stl", refetch=refetch))
    assert info.value.reason == "expired_url"
    assert len(server.hits()) == 2
    assert no_files(tmp_path / "item")


# ---------------------------------------------------------------- redirects and hosts


def test_redirect_loop(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: redirect("/file/b" if request.path == "/file/a" else "/file/a")
    client, _ = client_for(server)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a", tmp_path / "item", "a.stl"))
    assert info.value.reason == "redirect_loop"
    assert len(server.hits()) == 2
    assert no_files(tmp_path / "item")


def test_endless_redirect_chain_is_cut(server: FakeServer, tmp_path: Path) -> None:
    server.app = lambda request: redirect(f"/hop/{int(request.path.rsplit('/', 1)[-1]) + 1}")
    client, _ = client_for(server)
    with pytest.raises(DownloadError) as info:
        run(client.request("fake", "GET", server.url + "/hop/0"))
    assert info.value.reason == "redirect_loop"
    assert len(server.hits()) == 6


def test_redirect_to_disallowed_host_never_connects(server: FakeServer, other_server: FakeServer,
                                                    tmp_path: Path) -> None:
    other_server.app = file_app
    server.app = lambda request: redirect(other_server.url + "/file/evil.stl")
    client, _ = client_for(server)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "host_not_allowed"
    assert other_server.requests == []
    assert no_files(tmp_path / "item")


def test_auth_header_stays_on_its_origin(server: FakeServer, other_server: FakeServer, tmp_path: Path) -> None:
    other_server.app = file_app
    server.app = lambda request: redirect(other_server.url + "/file/cdn.stl")
    client, _ = client_for(server, other_server.hostport)
    run(client.download("fake", server.url + "/dl", tmp_path, "a.stl", auth={"Authorization": "Bearer tok-123"}))
    assert server.hits()[0].headers.get("authorization") == "Bearer tok-123"
    assert "authorization" not in other_server.hits()[0].headers
    assert "Destill3D" in other_server.hits()[0].headers["user-agent"]


def test_private_address_refused_unless_explicitly_allowed(server: FakeServer) -> None:
    server.app = file_app
    settings = quick_settings()  # nothing explicitly allowed
    client = HttpClient(settings)
    client.register("fake", rate_limit=SketchfabAdapter.default_rate_limit, hosts=["127.0.0.1", "localhost"])
    for url in ("http://127.0.0.1/x", "http://localhost/x", "http://[::1]/x", "http://169.254.169.254/latest"):
        with pytest.raises(DownloadError) as info:
            run(client.request("fake", "GET", url))
        assert info.value.reason == "host_not_allowed"
    with pytest.raises(DownloadError) as info:
        run(client.request("fake", "GET", "file:///etc/passwd"))
    assert info.value.reason == "host_not_allowed"
    assert server.requests == []


# ---------------------------------------------------------------- the budget holds


def test_requests_in_any_window_never_exceed_the_budget(server: FakeServer) -> None:
    server.app = file_app
    budget, window = 4, 0.5
    client, _ = client_for(server, limit=RateLimit(budget, window))

    async def burst() -> None:
        await asyncio.gather(*(client.request("fake", "GET", server.url + f"/api/{n}") for n in range(14)))

    run(burst())
    times = sorted(r.at for r in server.hits("/api"))
    assert len(times) == 14
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t < start + window]
        assert len(in_window) <= budget, f"{len(in_window)} requests within {window}s starting at #{i}"
    assert times[-1] - times[0] >= (14 / budget - 1) * window * 0.9  # and it did not stall forever


def test_gzip_transfer_encoding_is_capped_after_decompression(server: FakeServer, tmp_path: Path) -> None:
    import gzip

    bomb = gzip.compress(b"\0" * (3 * 1024 * 1024))  # ~3 KB on the wire, 3 MB decoded
    server.app = lambda request: Reply(body=bomb, headers={"content-encoding": "gzip"})
    client, _ = client_for(server, max_download_mb=1)
    with pytest.raises(DownloadError) as info:
        run(client.download("fake", server.url + "/file/a.stl", tmp_path / "item", "a.stl"))
    assert info.value.reason == "too_large"
    assert no_files(tmp_path / "item")
