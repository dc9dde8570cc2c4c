"""One HTTP layer for every adapter: pacing, retries, bans, host checks, safe streamed downloads.

- **Pacing** (:mod:`.rate`): a bucket per (platform, origin, credential fingerprint), shared by
  every client in the process. Each request (each redirect hop) takes a slot from the bucket of
  the origin it goes to: the platform's API origin gets the platform's budget, any other host
  (a file CDN) its own ``file_rate_limit`` budget. A slot is handed back as soon as its request is
  answered, so a redirect never waits on a slot its own first hop holds.
- **Retries** (tenacity): 429/420 and 5xx answers and broken transfers are retried with
  exponential back-off and jitter; ``Retry-After`` (seconds or HTTP date),
  ``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset`` (epoch or ISO time) are honoured and pause
  the bucket. A wait longer than ``max_retry_wait_s`` is not slept through: the bucket pauses and
  ``RateLimitError`` tells the queue when to come back. Everything within one call shares one
  total deadline. A host that cannot be reached at all (DNS, refused, unreachable) is reported at
  once as ``connection_failed`` naming the cause: no back-off, and its slot is refunded.
- **Bans**: an HTML 403 (a CDN block page) or ``ban_after_403`` consecutive 403s on different URLs
  pause the platform for ``ban_pause_s``, emit ``RateBudgetChanged(banned=True)`` and raise
  ``PlatformError(reason="banned")``; later calls fail at once without touching the network.
- **Hosts** (:mod:`.hostpolicy`): redirects are followed here, one hop at a time, and every target
  is checked before connecting: scheme, the platform's allowed hosts, and no
  private/loopback/link-local address unless its ``host:port`` is explicitly allowed
  (``acquisition.allow_hosts`` or the configured ``base_url``). The host is resolved once and the
  connection goes to the checked address (no DNS rebinding). Auth headers go only to the origin
  they were meant for.
- **Downloads** stream to ``<name>.part`` with sha256 while streaming, a size cap, a per-read
  timeout, a minimum rate and a total deadline, then an atomic rename. A short body or a size that
  disagrees with Content-Length/the platform's size is ``truncated``; nothing partial is promoted.
  At most ``max_concurrent_downloads`` bodies stream at once per event loop, across platforms; a
  download waiting on its platform's budget holds none of them. Cancelling a download (a drain)
  closes its connection and removes the partial file.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..config import Settings
from ..errors import AcquisitionError, DownloadError, PlatformError, RateLimitError
from ..events import Event, RateBudgetChanged
from . import hostpolicy
from .base import RateLimit
from .credentials import redact
from .hostpolicy import (
    HostPolicy,
    PinnedBackend,
    connection_error,
    ip_literal,
    origin_of,
    pinned_transport,
    port_of,
    resolve,
)
from .rate import RateBucket, RateStatus, Slot, bucket_for, file_host_origin, rate_status
from .transfer import BodyStream, Received, StreamLimits

__all__ = ["DownloadedFile", "EmitFn", "HostPolicy", "HttpClient", "HttpResponse", "RateBucket", "RateStatus",
           "bucket_for", "rate_status"]

MAX_REDIRECTS = 5
API_MAX_BYTES = 32 * 1024 * 1024  # JSON answers larger than this are refused
DEFAULT_FILE_RATE = RateLimit(10, 1.0)  # hosts other than a platform's API (file CDNs), unless configured

_TRANSFERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _transfer_slots(size: int) -> asyncio.Semaphore:
    """The loop's shared download slots (one set for every platform and client on that loop)."""
    loop = asyncio.get_running_loop()
    slots = _TRANSFERS.get(loop)
    if slots is None:
        slots = _TRANSFERS[loop] = asyncio.Semaphore(max(1, size))
    return slots


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
        self._backend = PinnedBackend()  # connections go only to addresses check_url pinned

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
        """Declare a platform's allowed hosts and pacing; ``base_url``'s host:port is explicitly allowed.

        ``hosts`` are names served on the default port (``*.example.com`` for subdomains) or
        ``host:port`` pairs; either way they must resolve to public addresses.
        """
        explicit = set(self._global_explicit)
        origin = ""
        if base_url:
            url = httpx.URL(base_url)
            explicit.add(f"{url.host}:{port_of(url)}")
            origin = origin_of(url)
        configured = self.settings.platform(platform).rate_limit
        limit = RateLimit.parse(configured) if configured else rate_limit
        policy = HostPolicy({h.lower() for h in hosts}, explicit)
        self._platforms[platform] = (policy, limit, origin)
        self._credentials[platform] = credential

    def allow_host(self, platform: str, hostport: str) -> None:
        self._platforms[platform][0].explicit.add(hostport.lower())

    def bucket(self, platform: str) -> RateBucket:
        """The platform's API budget (its configured base URL's origin)."""
        _policy, limit, origin = self._platforms[platform]
        return bucket_for(platform, origin, self._credentials.get(platform), limit)

    def bucket_for_url(self, platform: str, url: httpx.URL) -> RateBucket:
        """The API budget for the API's origin; any other host (a file CDN) is paced by its own."""
        _policy, _limit, origin = self._platforms[platform]
        target = origin_of(url)
        if not origin or target == origin:
            return self.bucket(platform)
        configured = self.settings.platform(platform).file_rate_limit
        limit = RateLimit.parse(configured) if configured else DEFAULT_FILE_RATE
        return bucket_for(platform, file_host_origin(target), None, limit)

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
                transport=pinned_transport(self._backend),
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
        """Refuse a URL before connecting (scheme, allowed host, private addresses); pin what was checked."""
        if url.scheme not in ("http", "https") or not url.host:
            raise DownloadError(f"refused URL scheme {url.scheme!r}", url=redact(str(url)), reason="host_not_allowed",
                                kind="permanent")
        policy = self._platforms[platform][0]
        named, explicit = policy.allows(url)
        if not named:
            raise DownloadError(
                f"{platform}: host {url.host}:{port_of(url)} is not an allowed host for this platform",
                url=redact(str(url)), reason="host_not_allowed", kind="permanent",
            )
        addresses = hostpolicy.checked_addresses(platform, url, await resolve(platform, url), explicit=explicit)
        if not ip_literal(url.host):
            self._backend.pin(url.host, port_of(url), addresses)

    def _check_ban(self, platform: str, bucket: RateBucket) -> None:
        for held in {id(b): b for b in (bucket, self.bucket(platform))}.values():
            if held.banned and held.pause_remaining() > 0:
                error = PlatformError(
                    f"{platform} is paused after a ban ({held.message}); not retrying for "
                    f"{held.pause_remaining():.0f} s", platform=platform, status_code=403, reason="banned",
                )
                error.retry_after = held.pause_remaining()  # type: ignore[attr-defined]
                raise error

    async def _pace(self, platform: str, bucket: RateBucket, deadline: float) -> Slot:
        """Wait for a slot of ``bucket``; the request hands it back once it is answered."""
        self._check_ban(platform, bucket)
        while True:
            wait, slot = bucket.reserve()
            if slot is not None:
                return slot
            paused = bucket.pause_remaining()
            if paused > self.acq.max_retry_wait_s or time.monotonic() + wait > deadline:
                why = f"paused ({bucket.message or 'throttled'})" if paused > 0 else \
                    f"its budget of {bucket.limit.requests} per {bucket.limit.per_seconds:g} s has no slot"
                raise RateLimitError(f"{platform}: {why}; next request possible in {wait:.0f} s", retry_after=wait)
            await asyncio.sleep(min(wait, 1.0))
            self._check_ban(platform, bucket)

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
        url: httpx.URL,
        *,
        headers: Mapping[str, str] | None,
        auth: Mapping[str, str] | None,
        content: bytes | None,
        json_body: Any,
        deadline: float,
    ) -> tuple[httpx.Response, RateBucket]:
        """Send, following redirects ourselves; returns an open streaming response (caller closes)
        and the bucket of the host that answered it."""
        client = self._client()
        current, first_origin = url, origin_of(url)
        seen: set[str] = set()
        for _hop in range(MAX_REDIRECTS + 1):
            if str(current) in seen:
                raise DownloadError(f"{platform}: redirect loop at {redact(str(current))}", url=redact(str(current)),
                                    reason="redirect_loop", kind="permanent")
            seen.add(str(current))
            await self.check_url(platform, current)
            bucket = self.bucket_for_url(platform, current)
            send_headers = dict(headers or {})
            if auth and origin_of(current) == first_origin:
                send_headers.update(auth)
            request = client.build_request(method, current, headers=send_headers, content=content, json=json_body)
            response = await self._send(platform, client, request, bucket, deadline)
            if response.status_code not in (301, 302, 303, 307, 308) or "location" not in response.headers:
                return response, bucket
            await response.aclose()
            current = current.join(response.headers["location"])
            if response.status_code == 303:
                method, content, json_body = "GET", None, None
        raise DownloadError(f"{platform}: more than {MAX_REDIRECTS} redirects from {redact(str(url))}",
                            url=redact(str(url)), reason="redirect_loop", kind="permanent")

    async def _send(self, platform: str, client: httpx.AsyncClient, request: httpx.Request, bucket: RateBucket,
                    deadline: float) -> httpx.Response:
        """One request on its own slot: handed back when answered, refunded when it never left."""
        slot = await self._pace(platform, bucket, deadline)
        reached = True
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reached = False
            raise self._network_error(platform, request.url, exc) from None
        except httpx.HTTPError as exc:
            raise self._network_error(platform, request.url, exc) from None
        finally:
            if reached:
                bucket.done(slot)
            else:
                bucket.cancel(slot)

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
    def _network_error(platform: str, url: httpx.URL, exc: BaseException) -> AcquisitionError:
        """The error for a transport failure, naming its cause (DNS, refused, unreachable, timeout)."""
        if isinstance(exc, httpx.ConnectTimeout):
            return connection_error(platform, url, "timed out connecting (host unreachable?)")
        if isinstance(exc, httpx.ConnectError):
            return connection_error(platform, url, hostpolicy.os_cause(exc))
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return DownloadError(f"{platform}: timed out talking to {redact(str(url))}", url=redact(str(url)),
                                 reason="timeout")
        return DownloadError(
            f"{platform}: connection failed for {redact(str(url))}: {_cause(exc)}",
            url=redact(str(url)), reason="connection_failed",
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
        target = httpx.URL(url, params=params) if params else httpx.URL(url)
        async for attempt in self._retrying(deadline):
            with attempt:
                return await self._request_once(platform, method, target, headers, auth, json, content, deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request_once(self, platform: str, method: str, url: httpx.URL, headers: Mapping[str, str] | None,
                            auth: Mapping[str, str] | None, json_body: Any, content: bytes | None,
                            deadline: float) -> HttpResponse:
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                response, bucket = await self._open(platform, method, url, headers=headers, auth=auth,
                                                    content=content, json_body=json_body, deadline=deadline)
                try:
                    body = await self._read_capped(platform, response)
                finally:
                    await response.aclose()
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._network_error(platform, url, exc) from None
        if response.status_code >= 400:
            raise self._status_error(platform, bucket, response, body)
        bucket.consecutive_403.clear()
        self._note_headers(platform, bucket, response.headers)
        return HttpResponse(response.status_code, response.headers, body, str(response.url))

    @staticmethod
    async def _read_capped(platform: str, response: httpx.Response) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > API_MAX_BYTES:
                raise PlatformError(f"{platform}: answer larger than {API_MAX_BYTES} bytes",
                                    reason="platform_error", kind="permanent")
        return bytes(body)

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
        expired); it is used once, then the error is ``expired_url``. Cancelling the task closes
        the connection and removes the partial file (``asyncio.CancelledError`` propagates).
        """
        safe = os.path.basename(name.replace("\\", "/")).lstrip(".") or "download.bin"
        target_dir.mkdir(parents=True, exist_ok=True)
        final = target_dir / safe
        part = target_dir / (safe + ".part")
        deadline = time.monotonic() + self.acq.download_deadline_s
        refetched = False
        try:
            while True:
                try:
                    result = await self._download_retried(platform, httpx.URL(url), part, headers, auth,
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

    async def _download_retried(self, platform: str, url: httpx.URL, part: Path, headers: Mapping[str, str] | None,
                                auth: Mapping[str, str] | None, expected_size: int | None,
                                deadline: float) -> tuple[str, int]:
        """:meth:`_download_once` under the retry policy, all attempts within ``deadline``."""
        async for attempt in self._retrying(deadline):
            with attempt:
                return await self._download_once(platform, url, part, headers, auth, expected_size, deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download_once(self, platform: str, url: httpx.URL, part: Path, headers: Mapping[str, str] | None,
                             auth: Mapping[str, str] | None, expected_size: int | None,
                             deadline: float) -> tuple[str, int]:
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                received, bucket = await self._receive(platform, url, part, headers, auth, deadline)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._network_error(platform, url, exc) from None
        received.check_complete(platform, str(url), expected_size)
        bucket.consecutive_403.clear()
        return received.sha256, received.size

    async def _receive(self, platform: str, url: httpx.URL, part: Path, headers: Mapping[str, str] | None,
                       auth: Mapping[str, str] | None, deadline: float) -> tuple[Received, RateBucket]:
        """One GET of ``url`` into ``part``: the answer checked, then its body streamed (:mod:`.transfer`)."""
        response, bucket = await self._open(platform, "GET", url, headers=headers, auth=auth, content=None,
                                            json_body=None, deadline=deadline)
        try:
            if response.status_code in (403, 410):
                raise _Expired()
            if response.status_code >= 400:
                raise self._status_error(platform, bucket, response, await response.aread())
            body = BodyStream(platform, str(url), StreamLimits.of(self.acq))
            declared = body.refuse_oversized(response)
            # a body streaming holds one of the loop's shared download slots; pacing waits hold none
            async with _transfer_slots(self.acq.max_concurrent_downloads):
                return await body.write(response, part, declared), bucket
        finally:
            await response.aclose()


def _cause(exc: BaseException) -> str:
    """The human cause of a transport error: its own text, else the OS error beneath it."""
    seen = exc
    while seen is not None:
        text = str(seen).strip()
        if text:
            return text
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return type(exc).__name__
