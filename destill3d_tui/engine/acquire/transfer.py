"""One download's body streamed to its ``.part`` file, and what must hold of it.

sha256 while streaming, the size cap (the declared ``Content-Length`` first, then the bytes that
really arrive), a minimum average rate over a sliding window (a server that drips bytes must
not hold a worker), and afterwards the size against ``Content-Length`` and the platform's own
figure. :class:`.http.HttpClient` opens the connection, paces and retries; this module only
reads the body it is handed, so each limit is checked in one place.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import DownloadError
from .credentials import redact


@dataclass(frozen=True)
class StreamLimits:
    cap: int  # bytes; a body over it is ``too_large`` (permanent)
    min_bytes_per_s: float  # slower than this on average over ``stall_window_s`` is ``timeout``
    stall_window_s: float

    @classmethod
    def of(cls, acquisition: Any) -> StreamLimits:
        """The limits of the ``[acquisition]`` settings section."""
        return cls(cap=acquisition.max_download_mb * 1024 * 1024,
                   min_bytes_per_s=acquisition.min_download_bytes_per_s,
                   stall_window_s=acquisition.stall_window_s)  # fmt: skip


@dataclass(frozen=True)
class Received:
    """What arrived: the body's sha256 and size, and the size the answer declared (if it did)."""

    sha256: str
    size: int
    declared: int | None

    def check_complete(self, platform: str, url: str, expected_size: int | None) -> None:
        """``truncated`` unless the size agrees with ``Content-Length`` and with the platform's figure."""
        if self.declared is not None and self.size != self.declared:
            raise DownloadError(f"{platform}: got {self.size} bytes, Content-Length said {self.declared}",
                                url=redact(url), reason="truncated")
        if expected_size is not None and self.size != expected_size:
            raise DownloadError(f"{platform}: got {self.size} bytes, the platform said {expected_size}",
                                url=redact(url), reason="truncated")


def declared_length(response: httpx.Response) -> int | None:
    """The body's size by ``Content-Length``; None when absent, not a number, or compressed."""
    if response.headers.get("content-encoding", "identity") not in ("identity", ""):
        return None  # Content-Length counts compressed bytes then
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


class BodyStream:
    """Streams one response body to a file under :class:`StreamLimits`."""

    def __init__(self, platform: str, url: str, limits: StreamLimits) -> None:
        self.platform = platform
        self.url = url
        self.limits = limits
        self._window: deque[tuple[float, int]] = deque()  # (time, bytes so far) over the stall window
        self._started = 0.0

    def refuse_oversized(self, response: httpx.Response) -> int | None:
        """The declared size; ``too_large`` before a byte is read when it is over the cap."""
        declared = declared_length(response)
        if declared is not None and declared > self.limits.cap:
            raise self._too_large(f"file is {declared} bytes, over the {self.limits.cap} byte cap")
        return declared

    async def write(self, response: httpx.Response, part: Path, declared: int | None) -> Received:
        """Write the body to ``part`` (``declared``: what :meth:`refuse_oversized` read); a
        connection closed part-way is ``truncated``."""
        digest = hashlib.sha256()
        count = 0
        self._started = time.monotonic()
        try:
            with part.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    count += len(chunk)
                    if count > self.limits.cap:
                        raise self._too_large(f"download passed the {self.limits.cap} byte cap")
                    digest.update(chunk)
                    out.write(chunk)
                    self._check_rate(count)
        except httpx.RemoteProtocolError as exc:
            if not count:
                raise  # nothing arrived: a connection failure, which the client reports as such
            raise DownloadError(f"{self.platform}: connection closed after {count} bytes of {redact(self.url)}",
                                url=redact(self.url), reason="truncated") from exc
        return Received(digest.hexdigest(), count, declared)

    def _check_rate(self, count: int) -> None:
        """``timeout`` when the average rate over the last ``stall_window_s`` is under the minimum."""
        now = time.monotonic()
        window = self._window
        window.append((now, count))
        span = self.limits.stall_window_s
        while window and window[0][0] < now - span:
            window.popleft()
        if now - self._started < span or not window:
            return
        rate = (count - window[0][1]) / max(now - window[0][0], 1e-6)
        if rate < self.limits.min_bytes_per_s:
            raise DownloadError(
                f"{self.platform}: download slower than {self.limits.min_bytes_per_s} B/s for {span:.0f} s",
                url=redact(self.url), reason="timeout",
            )

    def _too_large(self, message: str) -> DownloadError:
        return DownloadError(f"{self.platform}: {message}", url=redact(self.url), reason="too_large",
                             kind="permanent")
