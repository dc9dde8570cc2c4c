"""One HTTP layer for every adapter: pacing, retries, bans, host checks, safe streamed downloads.

- **Pacing**: a :class:`RateBucket` per (platform, API origin, credential fingerprint), shared by
  every client in the process: a token bucket (about one second's worth of burst) plus a sliding
  window log that makes "at most N requests in any window of W seconds" hold exactly.
- **Retries** (tenacity): 429/420 and 5xx and connection faults are retried with exponential
  back-off and jitter; ``Retry-After`` (seconds or HTTP date), ``x-ratelimit-remaining: 0`` +
  ``x-ratelimit-reset`` (epoch or ISO time) are honoured and pause the whole bucket. A wait longer
  than ``max_retry_wait_s`` is not slept through: the bucket pauses and ``RateLimitError`` tells
  the queue when to come back. Everything within one call shares one total deadline.
- **Bans**: an HTML 403 (a CDN block page) or ``ban_after_403`` consecutive 403s on different URLs
  pause the platform for ``ban_pause_s``, emit ``RateBudgetChanged(banned=True)`` and raise
  ``PlatformError(reason="banned")``; later calls fail at once without touching the network.
- **Hosts**: redirects are followed here, one hop at a time, and every target is checked before
  connecting: scheme, the platform's allowed hosts, and no private/loopback/link-local address
  unless its ``host:port`` is explicitly allowed (``acquisition.allow_hosts`` or the configured
  ``base_url``). Auth headers go only to the origin they were meant for.
- **Downloads** stream to ``<name>.part`` with sha256 while streaming, a size cap, a per-read
  timeout, a minimum rate and a total deadline, then an atomic rename. A short body or a size that
  disagrees with Content-Length/the platform's size is ``truncated``; nothing partial is promoted.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..config import Settings
from ..errors import AcquisitionError, DownloadError, PlatformError, RateLimitError
from ..events import Event, RateBudgetChanged
from .base import RateLimit
from .credentials import redact

MAX_REDIRECTS = 5
API_MAX_BYTES = 32 * 1024 * 1024  # JSON answers larger than this are refused
_CHUNK = 1 << 16


# ---------------------------------------------------------------- rate buckets


@dataclass
class RateStatus:
    tokens: float
    capacity: float
    paused_until: float | None  # wall-clock epoch seconds
    banned: bool
    message: str = ""


class RateBucket:
    """At most ``limit.requests`` in any window of ``limit.per_seconds`` (plus a small safety margin).

    Thread-safe: state is under a lock, waiting is ``asyncio.sleep`` in the caller's loop.
    """

    # The window is stretched a little so that network jitter between our clock and the server's
    # can never make the server count one request too many.
    MARGIN = 0.02
    SLACK_S = 0.02

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.capacity = float(limit.requests)
        self.window = limit.per_seconds * (1 + self.MARGIN) + self.SLACK_S
        self.rate = self.capacity / self.window
        self.burst = max(1.0, min(self.capacity, self.rate))
        self._tokens = self.burst
        self._stamp = clock()
        self._sent: deque[list[float | None]] = deque()
        self._clock = clock
        self._lock = threading.Lock()
        self.paused_until = 0.0  # monotonic
        self.banned = False
        self.message = ""
        self.consecutive_403: list[str] = []

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        while self._sent and self._sent[0][1] is not None and self._sent[0][1] <= now - self.window:
            self._sent.popleft()

    def _busy(self, now: float) -> list[list[float | None]]:
        """Requests that still count: in flight, or finished less than a window ago."""
        return [e for e in self._sent if e[1] is None or e[1] > now - self.window]

    def reserve(self) -> tuple[float, list[float | None] | None]:
        """``(0, slot)`` when a request may go now, else ``(seconds to wait, None)``.

        A slot counts from when it is taken until ``window`` seconds after :meth:`done`; so the
        server, which sees each request somewhere between those two instants, can never count
        more than ``capacity`` in any window, whatever the network latency.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            waits = [self.paused_until - now]
            if self._tokens < 1.0:
                waits.append((1.0 - self._tokens) / self.rate)
            busy = self._busy(now)
            if len(busy) >= self.capacity:
                finished = [e[1] for e in busy if e[1] is not None]
                waits.append(min(finished) + self.window - now if finished else 0.05)
            wait = max(waits)
            if wait > 0:
                return wait, None
            self._tokens -= 1.0
            slot: list[float | None] = [now, None]
            self._sent.append(slot)
            return 0.0, slot

    def done(self, slot: list[float | None] | None) -> None:
        if slot is not None:
            with self._lock:
                slot[1] = self._clock()

    def pause(self, seconds: float, message: str = "", *, banned: bool = False) -> None:
        with self._lock:
            self.paused_until = max(self.paused_until, self._clock() + seconds)
            self.banned = self.banned or banned
            self.message = message or self.message

    def pause_remaining(self) -> float:
        return max(0.0, self.paused_until - self._clock())

    def status(self) -> RateStatus:
        with self._lock:
            now = self._clock()
            self._refill(now)
            free = min(self._tokens, self.capacity - len(self._busy(now)))
            remaining = self.paused_until - now
            paused = time.time() + remaining if remaining > 0 else None
            if self.banned and remaining <= 0:
                self.banned = False
            return RateStatus(max(0.0, free), self.capacity, paused, self.banned, self.message)


_BUCKETS: dict[tuple[str, str, str], RateBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def bucket_for(platform: str, origin: str, credential: str | None, limit: RateLimit) -> RateBucket:
    """The process-wide bucket for this platform, API origin and credential."""
    fingerprint = hashlib.sha256((credential or "").encode()).hexdigest()[:12]
    key = (platform, origin, fingerprint)
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = _BUCKETS[key] = RateBucket(limit)
        return bucket


def rate_status() -> dict[str, RateStatus]:
    """Per platform, the most constrained of its buckets."""
    out: dict[str, RateStatus] = {}
    with _BUCKETS_LOCK:
        items = list(_BUCKETS.items())
    for (platform, _, _), bucket in items:
        status = bucket.status()
        prev = out.get(platform)
        if prev is None or status.banned or (status.paused_until or 0) > (prev.paused_until or 0):
            out[platform] = status
    return out


# ---------------------------------------------------------------- host policy


@dataclass
class HostPolicy:
    """Where a platform's requests may go."""

    hostnames: set[str] = field(default_factory=set)  # default ports only, must be public
    explicit: set[str] = field(default_factory=set)  # "host:port", private allowed

    def allows(self, url: httpx.URL) -> tuple[bool, bool]:
        """(allowed by name, explicitly allowed) for this URL."""
        hostport = f"{url.host}:{_port(url)}"
        if hostport in self.explicit:
            return True, True
        default = _port(url) == (443 if url.scheme == "https" else 80)
        named = url.host in self.hostnames or any(
            h.startswith("*.") and url.host.endswith(h[1:]) for h in self.hostnames
        )
        return named and default, False


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}:{_port(url)}"


def _is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return bool(
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


async def _resolves_private(host: str, port: int) -> bool:
    try:
        return _is_private(host)
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # the connection attempt will fail and say so
    return any(_is_private(info[4][0]) for info in infos)


# ---------------------------------------------------------------- responses and errors


@dataclass
class HttpResponse:
    status: int
    headers: httpx.Headers
    content: bytes
    url: str

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.content)
        except ValueError as exc:
            raise PlatformError(
                f"expected JSON from {redact(self.url)}, got {self.content[:80]!r}", reason="platform_error"
            ) from exc

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass
class DownloadedFile:
    path: Path
    sha256: str
    size: int
    url: str


class _Expired(Exception):
    """A download URL answered 403/410: it has probably expired."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or x-ratelimit-reset (epoch or ISO)."""
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset and headers.get("x-ratelimit-remaining", "").strip() == "0":
        try:
            number = float(reset)
            # small numbers are "seconds from now", large ones an epoch
            return max(0.0, number - time.time()) if number > 1e9 else max(0.0, number)
        except ValueError:
            try:
                return max(0.0, datetime.fromisoformat(reset.replace("Z", "+00:00")).timestamp() - time.time())
            except ValueError:
                return None
    return None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, RateLimitError):
        return True
    return isinstance(exc, AcquisitionError) and exc.kind == "transient" and getattr(exc, "retry", True)


# ---------------------------------------------------------------- the client


EmitFn = Callable[[Event], None]


class HttpClient:
    """The HTTP client adapters share. Create one per adapter; buckets are process-wide."""

    def __init__(self, settings: Settings, *, emit: EmitFn | None = None) -> None:
        self.settings = settings
        self.acq = settings.acquisition
        self.emit = emit
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._platforms: dict[str, tuple[HostPolicy, RateLimit, str]] = {}
        self._global_explicit = {h.strip().lower() for h in self.acq.allow_hosts if h.strip()}
        self._credentials: dict[str, str | None] = {}

    # ------------------------------------------------------------ setup

    def register(
        self,
        platform: str,
        *,
        rate_limit: RateLimit,
        hosts: Iterable[str],
        base_url: str = "",
        credential: str | None = None,
    ) -> None:
        """Declare a platform's allowed hosts and pacing; ``base_url``'s host:port is explicitly allowed."""
        explicit = set(self._global_explicit)
        origin = ""
        if base_url:
            url = httpx.URL(base_url)
            explicit.add(f"{url.host}:{_port(url)}")
            origin = _origin(url)
        configured = self.settings.platform(platform).rate_limit
        limit = RateLimit.parse(configured) if configured else rate_limit
        policy = HostPolicy({h.lower() for h in hosts}, explicit)
        self._platforms[platform] = (policy, limit, origin)
        self._credentials[platform] = credential

    def allow_host(self, platform: str, hostport: str) -> None:
        self._platforms[platform][0].explicit.add(hostport.lower())

    def bucket(self, platform: str) -> RateBucket:
        _policy, limit, origin = self._platforms[platform]
        return bucket_for(platform, origin, self._credentials.get(platform), limit)

    def _client(self) -> httpx.AsyncClient:
        """One AsyncClient per event loop (the sync wrappers run short-lived loops)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None or client.is_closed:
            timeout = httpx.Timeout(
                connect=min(10.0, self.acq.request_timeout_s),
                read=self.acq.read_timeout_s,
                write=self.acq.read_timeout_s,
                pool=self.acq.request_timeout_s,
            )
            client = httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=False,
                headers={"User-Agent": self.acq.user_agent},
                trust_env=False,
            )
            self._clients[loop_id] = client
        return client

    async def aclose(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.pop(loop_id, None)
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------ checks

    async def check_url(self, platform: str, url: httpx.URL) -> None:
        """Refuse a URL before connecting: scheme, allowed host, private addresses."""
        if url.scheme not in ("http", "https") or not url.host:
            raise DownloadError(f"refused URL scheme {url.scheme!r}", url=redact(str(url)), reason="host_not_allowed",
                                kind="permanent")
        policy = self._platforms[platform][0]
        named, explicit = policy.allows(url)
        if not named:
            raise DownloadError(
                f"{platform}: host {url.host}:{_port(url)} is not an allowed host for this platform",
                url=redact(str(url)), reason="host_not_allowed", kind="permanent",
            )
        if not explicit and await _resolves_private(url.host, _port(url)):
            raise DownloadError(
                f"{platform}: host {url.host} resolves to a private/loopback/link-local address "
                "(allow it with acquisition.allow_hosts)",
                url=redact(str(url)), reason="host_not_allowed", kind="permanent",
            )

    def _check_ban(self, platform: str, bucket: RateBucket) -> None:
        if bucket.banned and bucket.pause_remaining() > 0:
            error = PlatformError(
                f"{platform} is paused after a ban ({bucket.message}); not retrying for "
                f"{bucket.pause_remaining():.0f} s", platform=platform, status_code=403, reason="banned",
            )
            error.retry_after = bucket.pause_remaining()  # type: ignore[attr-defined]
            raise error

    async def _pace(self, platform: str, bucket: RateBucket, deadline: float) -> list[float | None] | None:
        """Wait for a slot; the caller hands it back with ``bucket.done(slot)`` when the exchange ends."""
        self._check_ban(platform, bucket)
        while True:
            wait, slot = bucket.reserve()
            if slot is not None:
                return slot
            if bucket.pause_remaining() > self.acq.max_retry_wait_s or time.monotonic() + wait > deadline:
                raise RateLimitError(
                    f"{platform}: rate budget exhausted, next slot in {wait:.0f} s", retry_after=wait
                )
            await asyncio.sleep(min(wait, 1.0))
            self._check_ban(platform, bucket)
        return None  # pragma: no cover

    def _emit_budget(self, platform: str, bucket: RateBucket) -> None:
        if self.emit is None:
            return
        status = bucket.status()
        self.emit(RateBudgetChanged(platform, status.tokens, status.capacity, status.paused_until, status.banned,
                                    status.message))

    # ------------------------------------------------------------ status handling

    def _on_403(self, platform: str, bucket: RateBucket, response: httpx.Response, body: bytes) -> Exception:
        headers = response.headers
        wait = _retry_after(headers)
        if wait is not None:  # GitHub primary/secondary limits answer 403 with these headers
            bucket.pause(wait, f"rate limited until reset ({wait:.0f} s)")
            self._emit_budget(platform, bucket)
            return RateLimitError(f"{platform}: rate limited (403 with reset headers)", retry_after=wait)
        url = str(response.request.url)
        if url not in bucket.consecutive_403:
            bucket.consecutive_403.append(url)
        head = body.lstrip()[:15].lower()
        html = "html" in headers.get("content-type", "") or head.startswith((b"<!doctype", b"<html"))
        if html or len(bucket.consecutive_403) >= max(1, self.acq.ban_after_403):
            why = "an HTML block page" if html else f"{len(bucket.consecutive_403)} consecutive 403 answers"
            message = f"{platform} answered with {why}: treating it as a ban, pausing {self.acq.ban_pause_s:.0f} s"
            bucket.pause(self.acq.ban_pause_s, message, banned=True)
            self._emit_budget(platform, bucket)
            error = PlatformError(message, platform=platform, status_code=403, reason="banned")
            error.retry_after = self.acq.ban_pause_s  # type: ignore[attr-defined]  # when the queue may try again
            return error
        return PlatformError(
            f"{platform}: forbidden (403) for {redact(url)}: {redact(body[:200].decode('utf-8', 'replace'))}",
            platform=platform, status_code=403, reason="forbidden", kind="permanent",
        )

    def _status_error(self, platform: str, bucket: RateBucket, response: httpx.Response, body: bytes) -> Exception:
        status = response.status_code
        url = redact(str(response.request.url))
        snippet = redact(body[:200].decode("utf-8", "replace"))
        if status == 403:
            return self._on_403(platform, bucket, response, body)
        bucket.consecutive_403.clear()
        if status in (420, 429):
            wait = _retry_after(response.headers)
            bucket.pause(wait if wait is not None else self.acq.backoff_initial_s, f"throttled ({status})")
            self._emit_budget(platform, bucket)
            return RateLimitError(f"{platform}: throttled ({status}) at {url}", retry_after=wait)
        if status == 401:
            return PlatformError(f"{platform}: credentials refused (401): {snippet}", platform=platform,
                                 status_code=401, reason="auth_failed", kind="permanent")
        if status in (404, 410):
            return PlatformError(f"{platform}: not found ({status}) at {url}", platform=platform,
                                 status_code=status, reason="not_found", kind="permanent")
        if status >= 500:
            return PlatformError(f"{platform}: server error {status} at {url}", platform=platform,
                                 status_code=status, reason="platform_error", kind="transient")
        return PlatformError(f"{platform}: HTTP {status} at {url}: {snippet}", platform=platform,
                             status_code=status, reason="platform_error", kind="permanent")

    # ------------------------------------------------------------ one hop chain

    async def _open(
        self,
        platform: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        auth: Mapping[str, str] | None,
        content: bytes | None,
        json_body: Any,
        pacing: tuple[RateBucket, float, list[Any]],
    ) -> httpx.Response:
        """Send, following redirects ourselves; returns an open streaming response (caller closes).

        Every hop takes its own slot from the bucket (``pacing`` = bucket, deadline, slots taken);
        the caller releases the slots when the exchange is over.
        """
        bucket, deadline, slots = pacing
        client = self._client()
        current = httpx.URL(url, params=params) if params else httpx.URL(url)
        first_origin = _origin(current)
        seen: set[str] = set()
        for _hop in range(MAX_REDIRECTS + 1):
            if str(current) in seen:
                raise DownloadError(f"{platform}: redirect loop at {redact(str(current))}", url=redact(str(current)),
                                    reason="redirect_loop", kind="permanent")
            seen.add(str(current))
            await self.check_url(platform, current)
            slots.append(await self._pace(platform, bucket, deadline))
            send_headers = dict(headers or {})
            if auth and _origin(current) == first_origin:
                send_headers.update(auth)
            request = client.build_request(method, current, headers=send_headers, content=content, json=json_body)
            response = await client.send(request, stream=True)
            if response.status_code not in (301, 302, 303, 307, 308) or "location" not in response.headers:
                return response
            await response.aclose()
            current = current.join(response.headers["location"])
            if response.status_code == 303:
                method, content, json_body = "GET", None, None
        raise DownloadError(f"{platform}: more than {MAX_REDIRECTS} redirects from {redact(url)}", url=redact(url),
                            reason="redirect_loop", kind="permanent")

    def _retrying(self, deadline: float) -> AsyncRetrying:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                base = retry_after
            else:
                base = min(self.acq.backoff_max_s, self.acq.backoff_initial_s * 2 ** (state.attempt_number - 1))
            return base + random.uniform(0, base * 0.25 + 0.01)

        def retry_ok(exc: BaseException) -> bool:
            if not _retryable(exc):
                return False
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None and retry_after > self.acq.max_retry_wait_s:
                return False
            # never sleep past the call's total deadline
            planned = retry_after if retry_after is not None else self.acq.backoff_initial_s
            return time.monotonic() + planned < deadline

        return AsyncRetrying(
            stop=stop_after_attempt(max(1, self.acq.retry_attempts)),
            wait=wait,
            retry=retry_if_exception(retry_ok),
            reraise=True,
        )

    @staticmethod
    def _network_error(platform: str, url: str, exc: Exception, *, download: bool) -> AcquisitionError:
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return DownloadError(f"{platform}: timed out talking to {redact(url)}", url=redact(url), reason="timeout")
        return DownloadError(
            f"{platform}: connection failed for {redact(url)}: {type(exc).__name__}",
            url=redact(url), reason="connection_failed",
        )

    # ------------------------------------------------------------ API requests

    async def request(
        self,
        platform: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        timeout_s: float | None = None,
    ) -> HttpResponse:
        """An API call: paced, retried, redirect-checked; raises a typed error for every non-2xx."""
        deadline = time.monotonic() + (timeout_s or self.acq.request_timeout_s)
        bucket = self.bucket(platform)
        async for attempt in self._retrying(deadline):
            with attempt:
                return await self._request_once(platform, bucket, method, url, params, headers, auth, json, content,
                                                deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_once(self, platform, bucket, method, url, params, headers, auth, json_body, content,
                            deadline) -> HttpResponse:  # type: ignore[no-untyped-def]
        slots: list[Any] = []
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                response = await self._open(platform, method, url, params=params, headers=headers, auth=auth,
                                            content=content, json_body=json_body, pacing=(bucket, deadline, slots))
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > API_MAX_BYTES:
                            raise PlatformError(f"{platform}: answer larger than {API_MAX_BYTES} bytes",
                                                reason="platform_error", kind="permanent")
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._network_error(platform, url, exc, download=False) from None
        finally:
            for slot in slots:
                bucket.done(slot)
        if response.status_code >= 400:
            raise self._status_error(platform, bucket, response, bytes(body))
        bucket.consecutive_403.clear()
        self._note_headers(platform, bucket, response.headers)
        return HttpResponse(response.status_code, response.headers, bytes(body), str(response.url))

    def _note_headers(self, platform: str, bucket: RateBucket, headers: httpx.Headers) -> None:
        """A successful answer that says the quota is spent pauses the bucket until reset."""
        if headers.get("x-ratelimit-remaining", "").strip() == "0":
            wait = _retry_after(headers)
            if wait:
                bucket.pause(wait, f"quota spent, resets in {wait:.0f} s")
                self._emit_budget(platform, bucket)

    async def get_json(self, platform: str, url: str, **kwargs: Any) -> tuple[Any, HttpResponse]:
        response = await self.request(platform, "GET", url, **kwargs)
        return response.json(), response

    # ------------------------------------------------------------ downloads

    async def download(
        self,
        platform: str,
        url: str,
        target_dir: Path,
        name: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: Mapping[str, str] | None = None,
        expected_size: int | None = None,
        refetch: Callable[[], Awaitable[str]] | None = None,
    ) -> DownloadedFile:
        """Stream ``url`` to ``target_dir/name`` (via ``name.part``), hashing as it goes.

        ``refetch`` gives a fresh URL when the first one answers 403/410 (a time-limited URL that
        expired); it is used once, then the error is ``expired_url``.
        """
        safe = os.path.basename(name.replace("\\", "/")).lstrip(".") or "download.bin"
        target_dir.mkdir(parents=True, exist_ok=True)
        final = target_dir / safe
        part = target_dir / (safe + ".part")
        deadline = time.monotonic() + self.acq.download_deadline_s
        bucket = self.bucket(platform)
        refetched = False
        try:
            while True:
                try:
                    async for attempt in self._retrying(deadline):
                        with attempt:
                            result = await self._download_once(platform, bucket, url, part, headers, auth,
                                                               expected_size, deadline)
                    break
                except _Expired:
                    if refetch is None or refetched:
                        raise DownloadError(
                            f"{platform}: download URL expired or refused (403/410): {redact(url)}",
                            url=redact(url), reason="expired_url", kind="transient",
                        ) from None
                    refetched = True
                    url = await refetch()
            os.replace(part, final)
            return DownloadedFile(final, result[0], result[1], redact(url))
        finally:
            part.unlink(missing_ok=True)

    async def _download_once(self, platform, bucket, url, part, headers, auth, expected_size,
                             deadline) -> tuple[str, int]:  # type: ignore[no-untyped-def]
        cap = self.acq.max_download_mb * 1024 * 1024
        digest = hashlib.sha256()
        count = 0
        slots: list[Any] = []
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                response = await self._open(platform, "GET", url, params=None, headers=headers, auth=auth,
                                            content=None, json_body=None, pacing=(bucket, deadline, slots))
                try:
                    if response.status_code in (403, 410):
                        raise _Expired()
                    if response.status_code >= 400:
                        body = await response.aread()
                        raise self._status_error(platform, bucket, response, body)
                    declared = self._declared_length(response)
                    if declared is not None and declared > cap:
                        raise DownloadError(f"{platform}: file is {declared} bytes, over the {cap} byte cap",
                                            url=redact(url), reason="too_large", kind="permanent")
                    started = time.monotonic()
                    window: deque[tuple[float, int]] = deque()
                    with part.open("wb") as out:
                        async for chunk in response.aiter_bytes():
                            count += len(chunk)
                            if count > cap:
                                raise DownloadError(f"{platform}: download passed the {cap} byte cap",
                                                    url=redact(url), reason="too_large", kind="permanent")
                            digest.update(chunk)
                            out.write(chunk)
                            self._check_stall(platform, url, started, window, count)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            if count and isinstance(exc, httpx.RemoteProtocolError):
                raise DownloadError(f"{platform}: connection closed after {count} bytes of {redact(url)}",
                                    url=redact(url), reason="truncated") from None
            raise self._network_error(platform, url, exc, download=True) from None
        finally:
            for slot in slots:
                bucket.done(slot)
        if declared is not None and count != declared:
            raise DownloadError(f"{platform}: got {count} bytes, Content-Length said {declared}",
                                url=redact(url), reason="truncated")
        if expected_size is not None and count != expected_size:
            raise DownloadError(f"{platform}: got {count} bytes, the platform said {expected_size}",
                                url=redact(url), reason="truncated")
        bucket.consecutive_403.clear()
        return digest.hexdigest(), count

    @staticmethod
    def _declared_length(response: httpx.Response) -> int | None:
        if response.headers.get("content-encoding", "identity") not in ("identity", ""):
            return None  # Content-Length counts compressed bytes then
        try:
            return int(response.headers["content-length"])
        except (KeyError, ValueError):
            return None

    def _check_stall(self, platform: str, url: str, started: float, window: deque[tuple[float, int]],
                     count: int) -> None:
        """A server that drips bytes must not hold a worker: enforce a minimum average rate."""
        now = time.monotonic()
        window.append((now, count))
        span = self.acq.stall_window_s
        while window and window[0][0] < now - span:
            window.popleft()
        if now - started < span or not window:
            return
        rate = (count - window[0][1]) / max(now - window[0][0], 1e-6)
        if rate < self.acq.min_download_bytes_per_s:
            raise DownloadError(
                f"{platform}: download slower than {self.acq.min_download_bytes_per_s} B/s for {span:.0f} s",
                url=redact(url), reason="timeout",
            )
