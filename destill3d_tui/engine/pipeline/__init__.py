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

Classes: :class:`Pipeline` composes a :class:`~.writer.Writer` (owns the operation queue;
stages hand it an :class:`Op` with ``writer.submit``) and the :class:`~.stages.Stages` (acquire,
extract, classify), which share one :class:`~.run.RunState`.

Modules: :mod:`.core` (the Pipeline, its controls), :mod:`.run` (the shared run state),
:mod:`.stages` (acquire, extract, classify), :mod:`.writer` (the writer thread), :mod:`.items`
(work items, ops, provenance), :mod:`.extraction` (in-process extraction and the supervisor),
:mod:`.archives` (one item per model file inside an archive). Crash points for the crash tests
live in :mod:`..crashpoints`.
"""

from __future__ import annotations

from ..errors import DownloadError
from .core import Pipeline
from .extraction import extract_in_process, extraction_options, make_supervisor
from .items import (
    BATCH_MAX,
    CHECKPOINT,
    IDLE_POLL_S,
    Op,
    RunSummary,
    WorkItem,
    platform_wait,
    provenance_for,
)
from .run import RunState
from .stages import Stages
from .writer import Writer

__all__ = [
    "BATCH_MAX",
    "CHECKPOINT",
    "IDLE_POLL_S",
    "DownloadError",
    "Op",
    "Pipeline",
    "RunState",
    "RunSummary",
    "Stages",
    "WorkItem",
    "Writer",
    "extract_in_process",
    "extraction_options",
    "make_supervisor",
    "platform_wait",
    "provenance_for",
]
