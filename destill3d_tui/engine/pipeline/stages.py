"""The worker stages: acquire (asyncio), extract (supervised child processes), classify (batches).

They never write the database: each stage hands an :class:`~.items.Op` to the writer
(:meth:`~.writer.Writer.submit`), which commits it and only then moves the item on through
:class:`Stages` (the writer's :class:`~.writer.Handoff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as queue_mod
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import PlatformError
from ..events import StageStarted
from ..queue import QueueRow
from ..store import service
from ..store.db import ACQUIRED, CLASSIFIED, EXTRACTED, QUEUED
from ..store.snapshot import Snapshot
from ..text import text_to_path
from .archives import member_of, split_archive
from .extraction import extraction_options, make_supervisor
from .items import CHECKPOINT, Op, WorkItem, metadata_from_download, provenance_for
from .run import RunState
from .writer import Writer

DRAIN_POLL_S = 0.2
"""How often an item downloading looks at the stop flag: a drain cancels it within this."""
LOOP_CLOSE_S = 5.0  # cancelled download tasks get this long to unwind before the loop closes


# ---------------------------------------------------------------- checkpoints


def write_checkpoint(item: WorkItem, precision: str) -> None:
    """Write the snapshot next to the item so a restart resumes without re-extracting."""
    assert item.snapshot is not None
    item.blob = item.snapshot.to_bytes(precision)
    item.temp_dir.mkdir(parents=True, exist_ok=True)
    tmp = item.temp_dir / (CHECKPOINT + ".part")
    tmp.write_bytes(item.blob)
    tmp.replace(item.temp_dir / CHECKPOINT)


def load_checkpoint(item: WorkItem) -> bool:
    """Read the item's checkpointed snapshot; False when there is none or it cannot be read."""
    path = item.temp_dir / CHECKPOINT
    try:
        item.blob = path.read_bytes()
        item.snapshot = Snapshot.from_bytes(item.blob)
    except (OSError, ValueError, Exception):
        item.blob = item.snapshot = None
        return False
    return True


def load_classifier(settings: Settings) -> Any:
    """The stage classifier, or None when classification is off (items pass straight through)."""
    if not settings.classification.enabled:
        return None
    from ..classify.stage import load_stage_classifier

    return load_stage_classifier(settings)


def _started(run: RunState, item: WorkItem, stage: str) -> None:
    run.events.emit(StageStarted(queue_id=item.queue_id, model_id=item.model_id, stage=stage))


# ---------------------------------------------------------------- the stages together


class Stages:
    """Acquire, extract and classify; claimed rows and committed items reach them here."""

    def __init__(self, run: RunState, writer: Writer) -> None:
        self._run = run
        self._writer = writer
        self.acquire_stage = AcquireStage(run, writer)
        self.extract_stage = ExtractStage(run, writer)
        self.classify_stage = ClassifyStage(run, writer)

    def start(self) -> None:
        """Start the extraction children, the classifier, the download loop and the classify thread."""
        supervisor = make_supervisor(self._run.settings)
        classifier = load_classifier(self._run.settings)
        self.extract_stage.start(supervisor)
        self.acquire_stage.start(supervisor)  # archives are listed by the extraction children
        self.classify_stage.start(classifier)

    def stop(self) -> None:
        """Once the writer has finished: end the classify thread, the download loop, then the children."""
        self.classify_stage.stop()
        self.acquire_stage.stop()
        self.extract_stage.stop()  # whatever the children still hold was handed back by the writer

    # ------------------------------------------------------------ the writer's handoff

    def route(self, row: QueueRow) -> None:
        """A claimed row: resume it at its committed stage (from its checkpoint when there is one)."""
        item = WorkItem(row=row, temp_dir=self._run.temp_root / f"q{row.queue_id}")
        item.sha256, item.bytes_in = row.file_hash or "", row.bytes_in or 0
        item.primary = text_to_path(row.primary_path) if row.primary_path else None
        self._run.hold(item)
        if row.stage in (EXTRACTED, CLASSIFIED) and load_checkpoint(item):
            if row.stage == EXTRACTED:
                self.classify(item)
            else:
                self._writer.submit(Op("store", item))
            return
        if row.stage != QUEUED and item.primary is not None and item.primary.is_file():
            self.extract(item)
            return
        self.acquire_stage.submit(item)

    def extract(self, item: WorkItem) -> None:
        self.extract_stage.submit(item)

    def classify(self, item: WorkItem) -> None:
        self.classify_stage.submit(item)


# ---------------------------------------------------------------- acquire


class AcquireStage:
    """Downloads on one asyncio loop (its own thread): ``adapter.download`` per item, then sha256 dedup."""

    def __init__(self, run: RunState, writer: Writer) -> None:
        self._run = run
        self._writer = writer
        self.loop: asyncio.AbstractEventLoop | None = None  # the current run's (kept, closed, after stop)
        self._thread: threading.Thread | None = None
        self._adapters: dict[str, Any] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._supervisor: Any = None

    def start(self, supervisor: Any) -> None:
        self._supervisor = supervisor
        self.loop = asyncio.new_event_loop()
        self._slots = {}  # semaphores belong to one loop; a restarted pipeline has a new one
        self._thread = threading.Thread(target=self.loop.run_forever, name="d3d-acquire", daemon=True)
        self._thread.start()

    def submit(self, item: WorkItem) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self._acquire(item), self.loop)

    def adapter(self, platform: str) -> Any:
        """The adapter this stage downloads ``platform``'s items with (made on first use)."""
        if platform not in self._adapters:
            try:
                from ..acquire.registry import get_adapter
            except ImportError:
                get_adapter = None
            if get_adapter is not None:
                self._adapters[platform] = get_adapter(platform, self._run.settings, emit=self._run.events.emit)
            elif platform == "local":
                from ..acquire.platforms.local import LocalAdapter

                self._adapters[platform] = LocalAdapter(self._run.settings)
            else:
                raise PlatformError(
                    f"no adapter for platform {platform!r}", platform=platform, reason="platform_unavailable"
                )
        return self._adapters[platform]

    def stop(self) -> None:
        """Close adapters, stop the loop, and leave no task pending ("Task was destroyed ...").

        The clean-up runs on the loop's own thread: the caller may be inside another running
        loop (a Textual app, a test's loop), where ``run_until_complete`` is refused.
        """
        loop = self.loop
        if loop is None or self._thread is None:
            return
        self._close_adapters()
        if loop.is_running():
            done = asyncio.run_coroutine_threadsafe(_finish_tasks(), loop)
            with contextlib.suppress(Exception):
                done.result(timeout=LOOP_CLOSE_S + 5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join()
        self._thread = None
        loop.close()

    def _close_adapters(self) -> None:
        """Close adapters' HTTP clients on the loop they were made on."""
        assert self.loop is not None
        for adapter in self._adapters.values():
            closer = getattr(adapter, "aclose", None) or getattr(getattr(adapter, "http", None), "aclose", None)
            if closer is None:
                continue
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(closer(), self.loop).result(timeout=10)
        self._adapters.clear()

    async def _acquire(self, item: WorkItem) -> None:
        """Download one item; a drain cancels the download and hands the item back uncharged."""
        stopping, submit = self._run.stopping, self._writer.submit
        if stopping.is_set():
            submit(Op("release", item))
            return
        _started(self._run, item, "acquire")
        fetch = asyncio.ensure_future(self._fetch(item))
        while not fetch.done():
            await asyncio.wait({fetch}, timeout=DRAIN_POLL_S)
            if stopping.is_set() and not fetch.done():
                fetch.cancel()  # closes the connection and removes the partial file
                await asyncio.gather(fetch, return_exceptions=True)
        if fetch.cancelled():
            submit(Op("release", item))
            return
        error = fetch.exception()
        if error is not None:
            submit(Op("failed", item, error=error, stage=QUEUED))
        elif (first := fetch.result()) is not None:
            submit(Op("duplicate", item, duplicate_of=first))
        else:
            submit(Op("acquired", item))

    async def _fetch(self, item: WorkItem) -> str | None:
        """The download itself; returns the snapshot id already stored with the same bytes, if any."""
        async with self._platform_slot(item.row.platform):
            adapter = self.adapter(item.row.platform)
            target = item.temp_dir / "files"
            await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
            # what the search learned (files, urls) travels in the row: adapters that read it get it
            known = {"known": item.row.metadata} if getattr(adapter, "reads_queue_metadata", False) else {}
            result = await adapter.download(item.row.source_id, target, item.row.file_id, **known)
        item.primary, item.sha256, item.bytes_in = Path(result.primary), result.sha256, int(result.bytes_downloaded)
        item.metadata = metadata_from_download(result.metadata)
        await split_archive(item, self._supervisor)  # one item per model file inside an archive
        return await asyncio.to_thread(service.snapshot_id_for_hash, self._run.store, item.sha256)

    def _platform_slot(self, platform: str) -> asyncio.Semaphore:
        """``platforms.<p>.concurrency`` downloads per platform. The slots every platform shares are
        taken in the HTTP layer only while a body streams, so a platform waiting on its rate budget
        or on a slow host never keeps another platform's item from downloading."""
        if platform not in self._slots:
            self._slots[platform] = asyncio.Semaphore(max(1, self._run.settings.platform(platform).concurrency))
        return self._slots[platform]


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


# ---------------------------------------------------------------- extract


class ExtractStage:
    """Extraction in :class:`~..extract.isolate.ExtractionSupervisor` children (one file each)."""

    def __init__(self, run: RunState, writer: Writer) -> None:
        self._run = run
        self._writer = writer
        self._supervisor: Any = None

    def start(self, supervisor: Any) -> None:
        self._supervisor = supervisor

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.close(kill=True)

    def submit(self, item: WorkItem) -> None:
        if self._run.stopping.is_set():
            self._writer.submit(Op("release", item))
            return
        _started(self._run, item, "extract")
        assert item.primary is not None
        try:
            member = member_of({**item.row.metadata, **item.metadata})  # the model file inside an archive
            inside = {"member": member} if member else {}
            future = self._supervisor.submit(item.queue_id, item.primary, extraction_options(self._run.settings),
                                             provenance_for(item), **inside)  # fmt: skip
        except Exception as exc:
            self._writer.submit(Op("failed", item, error=exc, stage=ACQUIRED))
            return
        future.add_done_callback(lambda f: self._extracted(item, f))

    def _extracted(self, item: WorkItem, future: Future[Snapshot]) -> None:
        try:
            snapshot = future.result()
            snapshot.model_id = item.model_id
            _fill_provenance(snapshot, item)
            item.snapshot = snapshot
            write_checkpoint(item, self._run.settings.extraction.precision)
        except BaseException as exc:
            self._writer.submit(Op("failed", item, error=exc, stage=ACQUIRED))
            return
        self._writer.submit(Op("extracted", item))


def _fill_provenance(snapshot: Snapshot, item: WorkItem) -> None:
    ours = provenance_for(item)
    fmt = snapshot.provenance.original_format or (item.primary.suffix.lstrip(".").upper() if item.primary else "")
    ours.original_format = fmt
    ours.original_file_size = item.bytes_in or snapshot.provenance.original_file_size
    ours.original_file_hash = item.sha256 or snapshot.provenance.original_file_hash
    snapshot.provenance = ours


# ---------------------------------------------------------------- classify


class ClassifyStage:
    """One thread batching snapshots (size / max wait) through the stage classifier, or passing
    them through when none is configured."""

    def __init__(self, run: RunState, writer: Writer) -> None:
        self._run = run
        self._writer = writer
        self._queue: queue_mod.Queue[WorkItem | None] = queue_mod.Queue()  # None: the thread ends
        self._classifier: Any = None
        self._thread: threading.Thread | None = None

    def start(self, classifier: Any) -> None:
        self._classifier = classifier
        self._thread = threading.Thread(target=self._classify_loop, name="d3d-classify", daemon=True)
        self._thread.start()

    def submit(self, item: WorkItem) -> None:
        self._queue.put(item)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def _classify_loop(self) -> None:
        cfg = self._run.settings.classification
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + cfg.max_wait_ms / 1000.0
            while self._classifier is not None and len(batch) < cfg.batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue_mod.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._classify_batch(batch)

    def _classify_batch(self, batch: list[WorkItem]) -> None:
        submit = self._writer.submit
        if self._run.stopping.is_set():
            for item in batch:
                submit(Op("release", item))
            return
        for item in batch:
            _started(self._run, item, "classify")
        if self._classifier is not None:
            try:
                self._classifier.classify_batch([item.snapshot for item in batch])
                for item in batch:
                    write_checkpoint(item, self._run.settings.extraction.precision)
            except Exception as exc:
                for item in batch:
                    submit(Op("failed", item, error=exc, stage=EXTRACTED))
                return
        for item in batch:
            submit(Op("classified", item))
