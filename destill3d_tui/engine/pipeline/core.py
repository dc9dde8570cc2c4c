"""The :class:`Pipeline`: composes the writer and the stages; start, pause, resume, stop, run_until_empty."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from .. import locations
from ..config import Settings
from ..events import EventBus
from ..queue import Queue
from ..store.db import Store, is_fault
from .items import RunSummary
from .run import RunState
from .stages import Stages
from .writer import Writer

DRAIN_S = 15.0  # stop(): in-flight extractions get this long to commit; then they are handed back.
# SIGTERM must end within 30 s whatever is in flight (operators and service managers wait about
# that long); downloads stop at once, so this and the shutdown steps below fit well inside it
# (stages.LOOP_CLOSE_S: cancelled download tasks unwinding before the loop closes).

# ---------------------------------------------------------------- the pipeline


class Pipeline:
    """Runs queue items through the stages. ``start``/``pause``/``resume``/``stop``; events on ``events``.

    Three collaborators share one :class:`~.run.RunState`: the :class:`~.writer.Writer` (the only
    database writer; stages hand it their results with ``writer.submit``), the
    :class:`~.stages.Stages` (acquire, extract, classify; the writer moves committed items on to
    them), and this class, which starts and stops them in order.
    """

    def __init__(self, settings: Settings, store: Store, queue: Queue, events: EventBus) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.events = events
        db_key = hashlib.sha1(store.url.encode()).hexdigest()[:10]
        root = (
            Path(settings.acquisition.temp_directory) if settings.acquisition.temp_directory else locations.temp_root()
        )
        self.run_state = RunState(settings, store, queue, events, temp_root=root / db_key)
        self.writer = Writer(self.run_state)
        self.stages = Stages(self.run_state, self.writer)
        self.writer.connect(self.stages)
        self._running = False

    # ------------------------------------------------------------ control

    @property
    def owner(self) -> str:
        """The lease owner this pipeline claims under."""
        return self.run_state.owner

    @property
    def temp_root(self) -> Path:
        return self.run_state.temp_root

    @property
    def state(self) -> str:
        return self.run_state.state

    @property
    def inflight(self) -> int:
        return self.run_state.inflight()

    def start(self) -> None:
        if self._running:
            return
        self.run_state.begin()
        # Before any process or thread starts: a database fault here leaves nothing to clean up.
        self.writer.reap()  # leases of dead processes are reclaimed on start (spec 12.3)
        self.run_state.sweep_temp()
        self.stages.start()
        self.writer.start()  # last: it claims the work the stages wait for
        self._running = True
        self.run_state.set_state("paused" if self.run_state.paused.is_set() else "running")

    def pause(self) -> None:
        """Stop claiming new items; items in flight go on to their next committed stage and beyond."""
        self.run_state.paused.set()
        if self._running:
            self.run_state.set_state("paused")

    def resume(self) -> None:
        self.run_state.paused.clear()
        if self._running:
            self.run_state.set_state("running")

    @property
    def fault(self) -> Exception | None:
        """What stopped the run (a full, damaged or read-only database), or None."""
        return self.run_state.fault

    def stop(self, drain: bool = True) -> None:
        """Hand every in-flight item back or to a committed stage within :data:`DRAIN_S`, stop threads.

        Downloads see the stop and cancel themselves (their items go back to the queue uncharged);
        extractions and classifications get until the deadline to commit, then are handed back too.
        Tasks still on the download loop after that are cancelled before it closes.
        """
        if not self._running:
            return
        self.run_state.set_state("draining")
        self.run_state.stop_deadline = time.monotonic() + DRAIN_S
        self.run_state.stopping.set()
        self.writer.join()  # returns once nothing is in flight (or on a fault)
        self.stages.stop()
        self._running = False
        self.run_state.set_state("stopped")

    def run_until_empty(self, cancel: threading.Event | None = None, watch: bool = False) -> RunSummary:
        """Process until no unfinished item is left (``watch``: until ``cancel`` is set).

        Raises :class:`~..errors.DatabaseError` (one message naming the cause and the database)
        when the database stops the run: full, damaged, read-only. Nothing stored is lost, and
        the items in flight go back to the queue uncharged when the next run reaps their leases.
        """
        interrupted = False
        try:
            self.start()
            while not (cancel is not None and cancel.is_set()) and self.run_state.fault is None:
                if not watch and self.inflight == 0 and self.queue.pending() == 0:
                    break
                time.sleep(0.1)
            interrupted = cancel is not None and cancel.is_set()
        except Exception as exc:
            if not is_fault(exc):
                raise
            self.run_state.fault = self.run_state.fault or self.store.fault(exc)
        finally:
            self.stop(drain=True)
        if self.run_state.fault is not None:
            raise self.run_state.fault
        self.run_state.summary.interrupted = interrupted
        return self.run_state.summary
