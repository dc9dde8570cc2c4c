"""What the pipeline's collaborators share while it runs: :class:`RunState`.

The :class:`~.writer.Writer`, the :class:`~.stages.Stages` and the :class:`~.core.Pipeline` each
hold the one ``RunState`` of their pipeline: the engine parts they work on, the items in flight,
the stop and pause signals, the state the UI is shown, and the run's tally. Everything else
(the operation queue, the download loop, the extraction children, the classifier) belongs to
the one collaborator that uses it.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

from ..config import Settings
from ..events import EventBus, PipelineStateChanged
from ..queue import Queue, make_owner
from ..store.db import FAILED, FINAL_STAGES, Store
from .items import RunSummary, WorkItem


class RunState:
    """One pipeline's shared state. The in-flight table is locked: the writer, the download loop
    and extraction callbacks all read it; ``stopping``/``paused`` are events any thread may set."""

    def __init__(self, settings: Settings, store: Store, queue: Queue, events: EventBus, temp_root: Path) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.events = events
        self.owner = make_owner()  # the lease owner this process claims under
        self.temp_root = temp_root  # each item's downloads and checkpoint live in <temp_root>/q<id>
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.stop_deadline = float("inf")  # monotonic: in-flight items still held then are handed back
        self.fault: Exception | None = None  # set by the writer when the database stops the run
        self.summary = RunSummary()
        self._state = "stopped"
        self._inflight: dict[int, WorkItem] = {}
        self._lock = threading.Lock()

    def begin(self) -> None:
        """A fresh run: no stop asked, no fault, an empty tally."""
        self.stopping.clear()
        self.fault = None
        self.summary = RunSummary()

    # ------------------------------------------------------------ state shown to the UI

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.events.emit(PipelineStateChanged(state=state))

    # ------------------------------------------------------------ items in flight

    def hold(self, item: WorkItem) -> None:
        with self._lock:
            self._inflight[item.queue_id] = item

    def forget(self, item: WorkItem) -> None:
        with self._lock:
            self._inflight.pop(item.queue_id, None)

    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def held(self) -> list[WorkItem]:
        with self._lock:
            return list(self._inflight.values())

    def load_by_platform(self) -> Counter[str]:
        """How many items each platform has in flight."""
        with self._lock:
            return Counter(item.row.platform for item in self._inflight.values())

    # ------------------------------------------------------------ temp dirs

    def remove_temp(self, item: WorkItem) -> None:
        """Delete the item's temp dir: only ever a folder under our temp root, never a user's file."""
        temp = item.temp_dir.resolve()
        if temp.is_dir() and self.temp_root.resolve() in temp.parents:
            shutil.rmtree(temp, ignore_errors=True)

    def sweep_temp(self) -> None:
        """Remove temp dirs of items that finished (a crash between the store commit and the cleanup)."""
        if not self.temp_root.is_dir():
            return
        dirs = {int(p.name[1:]): p for p in self.temp_root.glob("q*") if p.name[1:].isdigit()}
        if not dirs:
            return
        Q = self.queue.Q
        finished = Q.select(Q.queue_id, Q.stage).where(Q.queue_id.in_(list(dirs)), Q.stage.in_(FINAL_STAGES))
        keep_failed = self.settings.pipeline.keep_failed_temp
        for row in finished:
            if not (keep_failed and row.stage == FAILED):
                shutil.rmtree(dirs[row.queue_id], ignore_errors=True)
        gone = set(dirs) - {r.queue_id for r in Q.select(Q.queue_id).where(Q.queue_id.in_(list(dirs)))}
        for queue_id in gone:  # rows deleted by hand: nothing will ever resume them
            shutil.rmtree(dirs[queue_id], ignore_errors=True)
