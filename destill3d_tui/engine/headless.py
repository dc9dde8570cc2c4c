"""``destill3d-tui --headless``: the unattended runner, the same pipeline as the TUI.

Progress goes to stderr (a rich progress bar on a TTY, plain lines otherwise); with ``--json``
one JSON object per finished item goes to stdout (model ids and messages in the escaped
display form of :func:`text.display`, like every line on stderr). Exit codes: 0 every item stored, 1 some
failed, 2 configuration or database error (a full, damaged or read-only database stops the run
with one line naming it), 130 interrupted by SIGINT, 143 by SIGTERM. The first signal hands
every in-flight item back or to a committed stage within 30 s and then exits; a second one
exits at once (the queue is still consistent: every transition is committed before the next
stage starts, and leases of a dead runner go back to the queue uncharged).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .config import Settings
from .errors import ConfigError, DatabaseError, Destill3DError
from .events import Event, ItemFailed, ItemsQueued, ItemStored
from .text import display, display_all

if TYPE_CHECKING:
    from .api import Destill3D

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: what a service manager expects after SIGTERM


def item_record(event: Event) -> dict[str, Any] | None:
    """The ``--json`` line for a finished item, or None for events that do not finish one."""
    if isinstance(event, ItemStored):
        return {
            "queue_id": event.queue_id,
            "model_id": event.model_id,
            "status": "duplicate" if event.duplicate_of else "stored",
            "snapshot_id": event.snapshot_id or None,
            "duplicate_of": event.duplicate_of,
            "bytes_in": event.bytes_in,
            "bytes_kept": event.bytes_kept,
        }
    if isinstance(event, ItemFailed) and not event.will_retry:
        return {
            "queue_id": event.queue_id,
            "model_id": event.model_id,
            "status": "failed",
            "stage": event.stage,
            "reason": event.reason,
            "message": event.message,
            "attempts": event.attempts,
        }
    return None


class _Reporter:
    """Turns events into stdout JSON lines and stderr progress. Called on the writer thread: quick."""

    def __init__(self, total: int, json_lines: bool, out: TextIO, err: TextIO) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.json_lines, self.out, self.err = json_lines, out, err
        self._lock = threading.Lock()
        self._progress: Any = None
        self._task: Any = None
        if err.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=err)
            self._progress = Progress(TextColumn("destill3d"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                                      console=console, transient=False)  # fmt: skip
            self._task = self._progress.add_task("queue", total=total or None, failed=0)
            self._progress.start()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, ItemsQueued):
                self.total += event.count
                self._update()
                return
            record = item_record(event)
            if record is None:
                return
            self.done += 1
            self.failed += record["status"] == "failed"
            record = display_all(record)  # names and messages from files and platforms, escaped
            if self.json_lines:
                self.out.write(json.dumps(record, default=str) + "\n")
                self.out.flush()
            self._line(record)
            self._update()

    def _line(self, record: dict[str, Any]) -> None:
        if self._progress is not None:
            return
        what = record["status"]
        detail = record.get("reason") or record.get("snapshot_id") or record.get("duplicate_of") or ""
        self.err.write(f"[{self.done}/{max(self.total, self.done)}] {what} {record['model_id']} {detail}\n")
        self.err.flush()

    def _update(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, total=max(self.total, self.done) or None,
                                  failed=self.failed)  # fmt: skip

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _install_signals(cancel: threading.Event, err: TextIO, received: list[int]) -> Callable[[], None]:
    """First SIGINT/SIGTERM: drain; second: leave now. Returns a function restoring the old handlers.

    The signal number goes into ``received``: the exit code is 128 + it (130 SIGINT, 143 SIGTERM).
    """

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            os._exit(128 + signum)
        received.append(signum)
        cancel.set()
        err.write("destill3d: stopping after in-flight items reach a committed stage (again to quit now)\n")
        err.flush()

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, h) for sig, h in old.items()] and None


def run_headless(
    settings: Settings,
    watch: bool = False,
    json_lines: bool = False,
    *,
    cancel: threading.Event | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the queue until it is empty (``watch``: until interrupted); returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    from .api import Destill3D

    try:
        d3d = Destill3D(settings)
    except (ConfigError, DatabaseError) as exc:
        err.write(f"destill3d-tui: {exc.reason}: {display(exc)}\n")
        return EXIT_USAGE
    cancel = cancel or threading.Event()
    received: list[int] = []
    restore = _install_signals(cancel, err, received)
    reporter = _Reporter(0, json_lines, out, err)
    unsubscribe = d3d.events.subscribe(reporter)
    try:
        reporter.total = d3d.queue_engine.pending()
        summary = d3d.pipeline.run_until_empty(cancel=cancel, watch=watch)
    except Exception as exc:  # the database stopped the run: one line, nothing stored is lost
        fault = _as_database_fault(exc, d3d)
        err.write(f"destill3d-tui: {fault.reason}: {display(fault)}\n")
        return EXIT_USAGE
    finally:
        unsubscribe()
        reporter.close()
        restore()
        _close_quietly(d3d)
    err.write(
        f"destill3d: {summary.stored} stored ({summary.duplicates} duplicates), {summary.failed} failed"
        f"{', interrupted' if summary.interrupted else ''}\n"
    )
    if summary.interrupted:
        return 128 + received[0] if received else EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


def _as_database_fault(exc: Exception, d3d: Destill3D) -> Destill3DError:
    """The error that stopped a run as one reportable error; anything that is not one is re-raised."""
    from .store.db import is_fault

    if isinstance(exc, Destill3DError):
        return exc
    if is_fault(exc):
        return d3d.store.fault(exc)
    raise exc


def _close_quietly(d3d: Destill3D) -> None:
    """Close the engine (pipeline, services, store); a database fault met again while closing was
    reported already."""
    from .store.db import is_fault

    try:
        d3d.close()
    except Exception as exc:
        if not is_fault(exc):
            raise
