"""The staged pipeline: acquire -> extract -> classify -> store, over the processing queue.

Threads (ARCHITECTURE.md, Concurrency):

- **writer** (one): the only code that writes the database. It claims work, commits every stage
  transition (in batches, one savepoint per item), stores snapshots, heartbeats and reaps
  leases. An item moves to its next stage only after the writer committed the previous one.
- **acquire**: one asyncio loop; ``adapter.download`` per item, then sha256 dedup.
- **extract**: :class:`ExtractionSupervisor` child processes (one file each, timeout, memory cap).
- **classify**: batches snapshots (size / max wait) through the stage classifier, or passes
  them through when none is configured.

Between stages a snapshot is checkpointed to ``<temp>/snapshot.d3d`` so that a restart resumes
an ``extracted`` or ``classified`` item without extracting it again.

Modules: :mod:`.core` (the Pipeline, its controls), :mod:`.stages` (acquire, extract, classify),
:mod:`.writer` (the writer thread), :mod:`.items` (work items, ops, provenance),
:mod:`.extraction` (in-process extraction and the supervisor).
"""

from __future__ import annotations

from ..errors import DownloadError
from .core import Pipeline
from .extraction import extract_in_process, extraction_options, make_supervisor
from .items import (
    BATCH_MAX,
    CHECKPOINT,
    IDLE_POLL_S,
    RunSummary,
    WorkItem,
    _CrashHook,
    _LeaseLost,
    _Op,
    _platform_wait,
    provenance_for,
)

__all__ = [
    "BATCH_MAX",
    "CHECKPOINT",
    "IDLE_POLL_S",
    "DownloadError",
    "Pipeline",
    "RunSummary",
    "WorkItem",
    "_CrashHook",
    "_LeaseLost",
    "_Op",
    "_platform_wait",
    "extract_in_process",
    "extraction_options",
    "make_supervisor",
    "provenance_for",
]
