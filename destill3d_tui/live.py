"""What the queue board shows, folded from engine events. Pure Python: no Textual, no I/O.

The app owns one :class:`LiveState`; the bridge feeds it batches of events (already coalesced)
and screens read it when they redraw. Keeping the fold pure makes it testable with plain events.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .engine import events as ev

MAX_FAILURES = 500
"""Failures kept in memory for the board; older ones are still in the queue table."""
THROUGHPUT_MINUTES = 30
"""The sparkline covers the last half hour, one bar per minute."""


@dataclass
class ActiveItem:
    queue_id: int
    model_id: str
    stage: str
    started_at: float
    progress: float | None = None  # 0..1 when the stage reports it


@dataclass
class Failure:
    queue_id: int
    model_id: str
    stage: str
    reason: str
    message: str
    attempts: int
    will_retry: bool
    at: float


@dataclass
class RateBudget:
    platform: str
    tokens: float
    capacity: float
    paused_until: float | None = None
    banned: bool = False
    message: str = ""


@dataclass
class LiveState:
    clock: Callable[[], float] = time.time
    pipeline_state: str = "stopped"
    active: dict[int, ActiveItem] = field(default_factory=dict)
    stored_at: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    failures: deque[Failure] = field(default_factory=lambda: deque(maxlen=MAX_FAILURES))
    rates: dict[str, RateBudget] = field(default_factory=dict)
    session_bytes_in: int = 0
    session_bytes_kept: int = 0
    session_stored: int = 0
    session_failed: int = 0
    session_duplicates: int = 0
    export_done: int = 0
    export_total: int = 0
    export_phase: str = ""
    export_output: str | None = None
    changed_ids: set[int] = field(default_factory=set)  # queue ids touched since the last redraw

    def apply(self, events: Iterable[ev.Event]) -> None:
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def throughput(self, minutes: int = THROUGHPUT_MINUTES) -> list[float]:
        """Models stored per minute, oldest minute first, ``minutes`` values."""
        now = self.clock()
        bins = [0.0] * minutes
        for at in reversed(self.stored_at):
            age_min = int((now - at) // 60)
            if age_min >= minutes:
                break
            if age_min >= 0:
                bins[minutes - 1 - age_min] += 1
        return bins

    @property
    def compression_ratio(self) -> float | None:
        return self.session_bytes_in / self.session_bytes_kept if self.session_bytes_kept else None

    def take_changed(self) -> set[int]:
        changed, self.changed_ids = self.changed_ids, set()
        return changed


def _started(state: LiveState, e: ev.StageStarted) -> None:
    state.active[e.queue_id] = ActiveItem(e.queue_id, e.model_id, e.stage, e.at)
    state.changed_ids.add(e.queue_id)


def _progressed(state: LiveState, e: ev.StageProgressed) -> None:
    item = state.active.get(e.queue_id)
    if item is not None:
        item.progress = (e.done / e.total) if e.total else None
        state.changed_ids.add(e.queue_id)


def _finished(state: LiveState, e: ev.StageFinished) -> None:
    item = state.active.get(e.queue_id)
    if item is not None:
        item.stage, item.progress = f"{e.stage} ✓", None
        state.changed_ids.add(e.queue_id)


def _stored(state: LiveState, e: ev.ItemStored) -> None:
    state.active.pop(e.queue_id, None)
    state.changed_ids.add(e.queue_id)
    state.stored_at.append(e.at)
    state.session_stored += 1
    state.session_duplicates += e.duplicate_of is not None
    state.session_bytes_in += e.bytes_in
    state.session_bytes_kept += e.bytes_kept


def _failed(state: LiveState, e: ev.ItemFailed) -> None:
    state.active.pop(e.queue_id, None)
    state.changed_ids.add(e.queue_id)
    state.session_failed += not e.will_retry
    state.failures.appendleft(
        Failure(e.queue_id, e.model_id, e.stage, e.reason, e.message, e.attempts, e.will_retry, e.at)
    )


def _pipeline(state: LiveState, e: ev.PipelineStateChanged) -> None:
    state.pipeline_state = e.state


def _rate(state: LiveState, e: ev.RateBudgetChanged) -> None:
    state.rates[e.platform] = RateBudget(e.platform, e.tokens, e.capacity, e.paused_until, e.banned, e.message)


def _export_progress(state: LiveState, e: ev.ExportProgressed) -> None:
    state.export_done, state.export_total, state.export_phase = e.done, e.total, e.phase


def _export_finished(state: LiveState, e: ev.ExportFinished) -> None:
    state.export_output, state.export_done = e.output, e.count
    state.export_total = max(state.export_total, e.count)


_HANDLERS: dict[type, Callable] = {
    ev.StageStarted: _started,
    ev.StageProgressed: _progressed,
    ev.StageFinished: _finished,
    ev.ItemStored: _stored,
    ev.ItemFailed: _failed,
    ev.PipelineStateChanged: _pipeline,
    ev.RateBudgetChanged: _rate,
    ev.ExportProgressed: _export_progress,
    ev.ExportFinished: _export_finished,
}
