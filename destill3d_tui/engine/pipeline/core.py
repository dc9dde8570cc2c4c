"""The :class:`Pipeline`: its state, threads and controls (start, pause, resume, stop, run_until_empty)."""

from __future__ import annotations

import asyncio
import contextlib
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
from ..store.db import Store, is_fault
from .extraction import make_supervisor
from .items import (
    RunSummary,
    WorkItem,
    _CrashHook,
    _Op,
)
from .stages import _StagesMixin
from .writer import _WriterMixin

DRAIN_S = 15.0  # stop(): in-flight extractions get this long to commit; then they are handed back.
# SIGTERM must end within 30 s whatever is in flight (operators and service managers wait about
# that long); downloads stop at once, so this and the shutdown steps below fit well inside it.
LOOP_CLOSE_S = 5.0  # cancelled download tasks get this long to unwind before the loop closes

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
        self._fault: Exception | None = None  # set by the writer when the database stops the run
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
        self._fault = None
        self._summary = RunSummary()
        # Before any process or thread starts: a database fault here leaves nothing to clean up.
        self._reap()  # leases of dead processes are reclaimed on start (spec 12.3)
        self._sweep_temp()
        self._supervisor = make_supervisor(self.settings)
        self._classifier = self._load_classifier()
        self._loop = asyncio.new_event_loop()
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

    @property
    def fault(self) -> Exception | None:
        """What stopped the run (a full, damaged or read-only database), or None."""
        return self._fault

    def stop(self, drain: bool = True) -> None:
        """Hand every in-flight item back or to a committed stage within :data:`DRAIN_S`, stop threads.

        Downloads see the stop and cancel themselves (their items go back to the queue uncharged);
        extractions and classifications get until the deadline to commit, then are handed back too.
        Tasks still on the download loop after that are cancelled before it closes.
        """
        if not self._threads:
            return
        self._set_state("draining")
        self._stop_deadline = time.monotonic() + DRAIN_S
        self._stopping.set()
        self._wake.set()
        self._threads[0].join()  # the writer: returns once nothing is in flight (or on a fault)
        self._classify_q.put(None)
        self._threads[2].join()
        self._close_loop()
        # Whatever the children still hold was handed back by the writer: stop them now.
        self._supervisor.close(kill=True)
        self._threads = []
        self._set_state("stopped")

    def _close_loop(self) -> None:
        """Close adapters, stop the loop, and leave no task pending ("Task was destroyed ...").

        The clean-up runs on the loop's own thread: the caller may be inside another running
        loop (a Textual app, a test's loop), where ``run_until_complete`` is refused.
        """
        loop = self._loop
        if loop is None:
            return
        self._close_adapters()
        if loop.is_running():
            done = asyncio.run_coroutine_threadsafe(_finish_tasks(), loop)
            with contextlib.suppress(Exception):
                done.result(timeout=LOOP_CLOSE_S + 5)
        loop.call_soon_threadsafe(loop.stop)
        self._threads[1].join()
        loop.close()

    def run_until_empty(self, cancel: threading.Event | None = None, watch: bool = False) -> RunSummary:
        """Process until no unfinished item is left (``watch``: until ``cancel`` is set).

        Raises :class:`~..errors.DatabaseError` (one message naming the cause and the database)
        when the database stops the run: full, damaged, read-only. Nothing stored is lost, and
        the items in flight go back to the queue uncharged when the next run reaps their leases.
        """
        interrupted = False
        try:
            self.start()
            while not (cancel is not None and cancel.is_set()) and self._fault is None:
                if not watch and self.inflight == 0 and self.queue.pending() == 0:
                    break
                time.sleep(0.1)
            interrupted = cancel is not None and cancel.is_set()
        except Exception as exc:
            if not is_fault(exc):
                raise
            self._fault = self._fault or self.store.fault(exc)
        finally:
            self.stop(drain=True)
        if self._fault is not None:
            raise self._fault
        self._summary.interrupted = interrupted
        return self._summary


async def _finish_tasks() -> None:
    """Cancel every other task on this loop, wait for them, then shut its generators and executor."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=LOOP_CLOSE_S)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()
