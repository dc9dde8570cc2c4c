"""Pacing: a :class:`RateBucket` per (platform, origin, credential fingerprint), shared process-wide.

A bucket is a token bucket (about one second's worth of burst) plus a sliding-window log that
makes "at most N requests in any window of W seconds" hold exactly. A request takes a slot when
it is sent and hands it back (:meth:`RateBucket.done`) as soon as it is answered, never at the
end of a longer exchange, so no exchange can wait on a slot it holds itself. A request that never
reached the server (the connection failed) gives its slot back uncounted (:meth:`RateBucket.cancel`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .base import RateLimit

Slot = list[float | None]  # [taken at, answered at | None], monotonic seconds


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
        self._sent: deque[Slot] = deque()
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

    def _busy(self, now: float) -> list[Slot]:
        """Requests that still count: in flight, or answered less than a window ago."""
        return [e for e in self._sent if e[1] is None or e[1] > now - self.window]

    def reserve(self) -> tuple[float, Slot | None]:
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
            slot: Slot = [now, None]
            self._sent.append(slot)
            return 0.0, slot

    def done(self, slot: Slot | None) -> None:
        """The request was answered (or failed after reaching the server): its window starts now."""
        if slot is not None:
            with self._lock:
                if slot[1] is None:
                    slot[1] = self._clock()

    def cancel(self, slot: Slot | None) -> None:
        """The request never reached the server: forget the slot and refund its token."""
        if slot is None:
            return
        with self._lock:
            try:
                self._sent.remove(slot)
            except ValueError:
                return  # already answered and aged out
            self._tokens = min(self.burst, self._tokens + 1.0)

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


FILE_HOST = "files@"  # prefix of the origin in the key of a file host's bucket
_BUCKETS: dict[tuple[str, str, str], RateBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def bucket_for(platform: str, origin: str, credential: str | None, limit: RateLimit) -> RateBucket:
    """The process-wide bucket for this platform, origin and credential."""
    fingerprint = hashlib.sha256((credential or "").encode()).hexdigest()[:12]
    key = (platform, origin, fingerprint)
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None or bucket.limit != limit:
            bucket = _BUCKETS[key] = RateBucket(limit)
        return bucket


def file_host_origin(origin: str) -> str:
    """The bucket key of a host that serves a platform's files (a CDN), not its API."""
    return FILE_HOST + origin


def rate_status() -> dict[str, RateStatus]:
    """Per platform, its API budget, or the most constrained of its buckets when one is paused or banned."""
    out: dict[str, tuple[bool, RateStatus]] = {}
    with _BUCKETS_LOCK:
        items = list(_BUCKETS.items())
    for (platform, origin, _), bucket in items:
        status, api = bucket.status(), not origin.startswith(FILE_HOST)
        prev = out.get(platform)
        worse = prev is not None and (status.banned or (status.paused_until or 0) > (prev[1].paused_until or 0))
        calm = prev is not None and not prev[1].banned and prev[1].paused_until is None
        if prev is None or worse or (api and not prev[0] and calm):
            out[platform] = (api, status)
    return {platform: status for platform, (_, status) in out.items()}
