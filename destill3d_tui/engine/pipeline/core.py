"""The :class:`Pipeline`: its state, threads and controls (start, pause, resume, stop, run_until_empty)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue as queue_mod
import threading
import time
from pathlib import Path
from typing import Any

from .. import locations
from ..config import Settings
from ..events import EventBus, PipelineStateChanged
from ..queue import Queue, make_owner
from ..store.db import Store
from .extraction import make_supervisor
from .items import (
    RunSummary,
    WorkItem,
    _CrashHook,
    _Op,
)
from .stages import _StagesMixin
from .writer import _WriterMixin

# ---------------------------------------------------------------- the pipeline


class Pipeline(_StagesMixin, _WriterMixin):
    """Runs queue items through the stages. ``start``/``pause``/``resume``/``stop``; events on ``events``."""

    def __init__(self, settings: Settings, store: Store, queue: Queue, events: EventBus) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.events = events
        self.owner = make_owner()
        self._crash = _CrashHook(os.environ.get("DESTILL3D_CRASH_AT"))
        self._state = "stopped"
        self._ops: queue_mod.Queue[_Op] = queue_mod.Queue()
        self._classify_q: queue_mod.Queue[WorkItem | None] = queue_mod.Queue()
        self._inflight: dict[int, WorkItem] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: Any = None
        self._classifier: Any = None
        self._adapters: dict[str, Any] = {}
        self._summary = RunSummary()
        self._wake = threading.Event()
        self._stop_deadline = float("inf")
        db_key = hashlib.sha1(store.url.encode()).hexdigest()[:10]
        root = (
            Path(settings.acquisition.temp_directory) if settings.acquisition.temp_directory else locations.temp_root()
        )
        self.temp_root = root / db_key

    # ------------------------------------------------------------ control

    @property
    def state(self) -> str:
        return self._state

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.events.emit(PipelineStateChanged(state=state))

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        self._summary = RunSummary()
        self._supervisor = make_supervisor(self.settings)
        self._classifier = self._load_classifier()
        self._loop = asyncio.new_event_loop()
        self._download_slots = asyncio.Semaphore(max(1, self.settings.acquisition.max_concurrent_downloads))
        self._reap()  # leases of dead processes are reclaimed on start (spec 12.3)
        self._sweep_temp()
        for name, target in (("writer", self._writer_loop), ("acquire", self._loop.run_forever),
                             ("classify", self._classify_loop)):  # fmt: skip
            thread = threading.Thread(target=target, name=f"d3d-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._set_state("paused" if self._paused.is_set() else "running")

    def pause(self) -> None:
        """Stop claiming new items; items in flight go on to their next committed stage and beyond."""
        self._paused.set()
        if self._threads:
            self._set_state("paused")

    def resume(self) -> None:
        self._paused.clear()
        self._wake.set()
        if self._threads:
            self._set_state("running")

    def stop(self, drain: bool = True) -> None:
        """Finish in-flight stages to a committed state, hand unfinished items back, stop threads."""
        if not self._threads:
            return
        self._set_state("draining")
        # In-flight stages get this long to reach a commit; then they are handed back unfinished.
        self._stop_deadline = time.monotonic() + self.settings.extraction.timeout_s + 30.0
        self._stopping.set()
        self._wake.set()
        writer = self._threads[0]
        writer.join()
        self._classify_q.put(None)
        self._threads[2].join()
        if self._loop is not None:
            self._close_adapters()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._threads[1].join()
            self._loop.close()
        self._supervisor.close()
        self._threads = []
        self._set_state("stopped")

    def run_until_empty(self, cancel: threading.Event | None = None, watch: bool = False) -> RunSummary:
        """Process until no unfinished item is left (``watch``: until ``cancel`` is set)."""
        self.start()
        try:
            while not (cancel is not None and cancel.is_set()):
                if not watch and self.inflight == 0 and self.queue.pending() == 0:
                    break
                time.sleep(0.1)
        finally:
            interrupted = cancel is not None and cancel.is_set()
            self.stop(drain=True)
        self._summary.interrupted = interrupted
        return self._summary
