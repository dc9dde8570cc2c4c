"""Events the engine emits, as frozen dataclasses named in the past tense.

The TUI's EngineBridge turns them into Textual messages; the headless runner prints them.
Subscribers are called on the emitting thread, so they must be quick and must not block:
hand the event to a queue or ``post_message`` and return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    at: float = field(default_factory=time.time, kw_only=True)


# ---------------------------------------------------------------- queue / pipeline


@dataclass(frozen=True)
class ItemsQueued(Event):
    count: int
    platform: str = "local"


@dataclass(frozen=True)
class StageStarted(Event):
    queue_id: int
    model_id: str
    stage: str


@dataclass(frozen=True)
class StageProgressed(Event):
    """Fraction done within a stage (downloads report bytes). Coalesce before drawing."""

    queue_id: int
    stage: str
    done: float
    total: float | None = None


@dataclass(frozen=True)
class StageFinished(Event):
    queue_id: int
    model_id: str
    stage: str
    ms: float = 0.0


@dataclass(frozen=True)
class ItemStored(Event):
    queue_id: int
    model_id: str
    snapshot_id: str
    bytes_in: int = 0
    bytes_kept: int = 0
    duplicate_of: str | None = None


@dataclass(frozen=True)
class ItemFailed(Event):
    queue_id: int
    model_id: str
    stage: str
    reason: str
    message: str
    attempts: int = 0
    will_retry: bool = False


@dataclass(frozen=True)
class PipelineStateChanged(Event):
    """state: running / paused / draining / stopped / idle."""

    state: str


# ---------------------------------------------------------------- acquisition


@dataclass(frozen=True)
class RateBudgetChanged(Event):
    platform: str
    tokens: float
    capacity: float
    paused_until: float | None = None
    banned: bool = False
    message: str = ""


# ---------------------------------------------------------------- export / classify


@dataclass(frozen=True)
class ExportProgressed(Event):
    done: int
    total: int
    phase: str = "writing"


@dataclass(frozen=True)
class ExportFinished(Event):
    output: str
    count: int
    skipped: int = 0


Subscriber = Callable[[Event], None]


class EventBus:
    """Thread-safe fan-out of events to subscribers. A failing subscriber is dropped, not fatal."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                with self._lock:
                    if callback in self._subscribers:
                        self._subscribers.remove(callback)
