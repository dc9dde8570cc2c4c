"""Crash points: named places where a crash test makes this process die on the spot.

``DESTILL3D_CRASH_AT=point`` (or ``point:n``: the n-th time it is reached) ends the process with
:func:`os._exit` when the code reaches ``point``: no ``finally``, no ``atexit``, no flush, as a
SIGKILL or a power cut would. The crash tests name the pipeline's commit boundaries
(:data:`PIPELINE_POINTS`, tests/store/test_crash.py) and the index writer's
(``index.before_save``, ``index.mid_write``, tests/dataset/test_index.py) this way.

The variable is read when a point is reached, so a test may set it after start-up; unset, a
crash point costs one environment lookup. Counts are kept per process (a runner is one process).
This is a core module: it imports nothing of the engine, so the store and the pipeline alike use it.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

ENV = "DESTILL3D_CRASH_AT"
KILLED = 137  # the exit status a shell reports for SIGKILL (128 + 9): what the crash stands for

PIPELINE_POINTS = (
    "after_claim",
    "after_acquire_commit",
    "after_extract_commit",
    "after_classify_commit",
    "before_store_commit",
    "after_store_commit",
)

_seen: Counter[str] = Counter()
_lock = threading.Lock()  # points are reached from several threads (the writer, extraction callbacks)


def reached(point: str, exit_code: int = KILLED) -> None:
    """Exit at once with ``exit_code`` when :data:`ENV` names ``point`` and this is its n-th time."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, times = spec.partition(":")
    if target.strip() != point:
        return
    with _lock:
        _seen[point] += 1
        due = _seen[point] >= int(times or 1)
    if due:
        os._exit(exit_code)
