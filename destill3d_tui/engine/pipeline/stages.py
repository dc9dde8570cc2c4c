"""The worker stages: acquire (asyncio), extract (supervised child processes), classify (batches).

They never write the database: each stage hands an :class:`~.items._Op` to the writer
(:mod:`.writer`), which commits it and only then moves the item on.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue as queue_mod
import shutil
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import PlatformError
from ..events import StageStarted
from ..queue import QueueRow
from ..store import service
from ..store.db import ACQUIRED, CLASSIFIED, EXTRACTED, FAILED, FINAL_STAGES, QUEUED
from ..store.snapshot import Snapshot
from ..text import text_to_path
from .archives import member_of, split_archive
from .extraction import extraction_options
from .items import (
    CHECKPOINT,
    WorkItem,
    _metadata_from_download,
    _Op,
    provenance_for,
)

DRAIN_POLL_S = 0.2
"""How often an item downloading looks at the stop flag: a drain cancels it within this."""


class _StagesMixin:
    """Acquire/extract/classify halves of :class:`~.core.Pipeline` (state lives there)."""

    # ------------------------------------------------------------ helpers

    def _load_classifier(self) -> Any:
        if not self.settings.classification.enabled:
            return None
        from ..classify.stage import load_stage_classifier

        return load_stage_classifier(self.settings)

    def _adapter(self, platform: str) -> Any:
        if platform not in self._adapters:
            try:
                from ..acquire.registry import get_adapter
            except ImportError:
                get_adapter = None
            if get_adapter is not None:
                self._adapters[platform] = get_adapter(platform, self.settings, emit=self.events.emit)
            elif platform == "local":
                from ..acquire.platforms.local import LocalAdapter

                self._adapters[platform] = LocalAdapter(self.settings)
            else:
                raise PlatformError(
                    f"no adapter for platform {platform!r}", platform=platform, reason="platform_unavailable"
                )
        return self._adapters[platform]

    def _close_adapters(self) -> None:
        """Close adapters' HTTP clients on the loop they were made on."""
        assert self._loop is not None
        for adapter in self._adapters.values():
            closer = getattr(adapter, "aclose", None) or getattr(getattr(adapter, "http", None), "aclose", None)
            if closer is None:
                continue
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(closer(), self._loop).result(timeout=10)
        self._adapters.clear()

    def _emit_started(self, item: WorkItem, stage: str) -> None:
        self.events.emit(StageStarted(queue_id=item.queue_id, model_id=item.model_id, stage=stage))

    def _remove_temp(self, item: WorkItem) -> None:
        """Delete the item's temp dir: only ever a folder under our temp root, never a user's file."""
        temp = item.temp_dir.resolve()
        if temp.is_dir() and self.temp_root.resolve() in temp.parents:
            shutil.rmtree(temp, ignore_errors=True)

    def _sweep_temp(self) -> None:
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

    def _checkpoint(self, item: WorkItem) -> None:
        """Write the snapshot next to the item so a restart resumes without re-extracting."""
        assert item.snapshot is not None
        item.blob = item.snapshot.to_bytes(self.settings.extraction.precision)
        item.temp_dir.mkdir(parents=True, exist_ok=True)
        tmp = item.temp_dir / (CHECKPOINT + ".part")
        tmp.write_bytes(item.blob)
        tmp.replace(item.temp_dir / CHECKPOINT)

    # ------------------------------------------------------------ routing claimed items

    def _route(self, row: QueueRow) -> None:
        item = WorkItem(row=row, temp_dir=self.temp_root / f"q{row.queue_id}")
        item.sha256, item.bytes_in = row.file_hash or "", row.bytes_in or 0
        item.primary = text_to_path(row.primary_path) if row.primary_path else None
        with self._lock:
            self._inflight[row.queue_id] = item
        if row.stage in (EXTRACTED, CLASSIFIED) and self._load_checkpoint(item):
            if row.stage == EXTRACTED:
                self._classify_q.put(item)
            else:
                self._ops.put(_Op("store", item))
            return
        if row.stage != QUEUED and item.primary is not None and item.primary.is_file():
            self._submit_extract(item)
            return
        self._submit_acquire(item)

    def _load_checkpoint(self, item: WorkItem) -> bool:
        path = item.temp_dir / CHECKPOINT
        try:
            item.blob = path.read_bytes()
            item.snapshot = Snapshot.from_bytes(item.blob)
        except (OSError, ValueError, Exception):
            item.blob = item.snapshot = None
            return False
        return True

    # ------------------------------------------------------------ acquire

    def _submit_acquire(self, item: WorkItem) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._acquire(item), self._loop)

    async def _acquire(self, item: WorkItem) -> None:
        """Download one item; a drain cancels the download and hands the item back uncharged."""
        if self._stopping.is_set():
            self._ops.put(_Op("release", item))
            return
        self._emit_started(item, "acquire")
        fetch = asyncio.ensure_future(self._fetch(item))
        while not fetch.done():
            await asyncio.wait({fetch}, timeout=DRAIN_POLL_S)
            if self._stopping.is_set() and not fetch.done():
                fetch.cancel()  # closes the connection and removes the partial file
                await asyncio.gather(fetch, return_exceptions=True)
        if fetch.cancelled():
            self._ops.put(_Op("release", item))
            return
        error = fetch.exception()
        if error is not None:
            self._ops.put(_Op("failed", item, error=error, stage=QUEUED))
        elif (first := fetch.result()) is not None:
            self._ops.put(_Op("duplicate", item, duplicate_of=first))
        else:
            self._ops.put(_Op("acquired", item))

    async def _fetch(self, item: WorkItem) -> str | None:
        """The download itself; returns the snapshot id already stored with the same bytes, if any."""
        async with self._platform_slot(item.row.platform):
            adapter = self._adapter(item.row.platform)
            target = item.temp_dir / "files"
            await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
            # what the search learned (files, urls) travels in the row: adapters that read it get it
            known = {"known": item.row.metadata} if getattr(adapter, "reads_queue_metadata", False) else {}
            result = await adapter.download(item.row.source_id, target, item.row.file_id, **known)
        item.primary, item.sha256, item.bytes_in = Path(result.primary), result.sha256, int(result.bytes_downloaded)
        item.metadata = _metadata_from_download(result.metadata)
        await split_archive(item, self._supervisor)  # one item per model file inside an archive
        return await asyncio.to_thread(service.snapshot_id_for_hash, self.store, item.sha256)

    def _platform_slot(self, platform: str) -> asyncio.Semaphore:
        """``platforms.<p>.concurrency`` downloads per platform. The slots every platform shares are
        taken in the HTTP layer only while a body streams, so a platform waiting on its rate budget
        or on a slow host never keeps another platform's item from downloading."""
        loop = asyncio.get_running_loop()
        owner, slots = getattr(self, "_platform_slots", (None, {}))
        if owner is not loop:  # semaphores belong to one loop; a restarted pipeline has a new one
            slots = {}
            self._platform_slots = (loop, slots)
        if platform not in slots:
            slots[platform] = asyncio.Semaphore(max(1, self.settings.platform(platform).concurrency))
        return slots[platform]

    # ------------------------------------------------------------ extract

    def _submit_extract(self, item: WorkItem) -> None:
        if self._stopping.is_set():
            self._ops.put(_Op("release", item))
            return
        self._emit_started(item, "extract")
        assert item.primary is not None
        try:
            member = member_of({**item.row.metadata, **item.metadata})  # the model file inside an archive
            inside = {"member": member} if member else {}
            future = self._supervisor.submit(item.queue_id, item.primary, extraction_options(self.settings),
                                             provenance_for(item), **inside)  # fmt: skip
        except Exception as exc:
            self._ops.put(_Op("failed", item, error=exc, stage=ACQUIRED))
            return
        future.add_done_callback(lambda f: self._extracted(item, f))

    def _extracted(self, item: WorkItem, future: Future[Snapshot]) -> None:
        try:
            snapshot = future.result()
            snapshot.model_id = item.model_id
            self._fill_provenance(snapshot, item)
            item.snapshot = snapshot
            self._checkpoint(item)
        except BaseException as exc:
            self._ops.put(_Op("failed", item, error=exc, stage=ACQUIRED))
            return
        self._ops.put(_Op("extracted", item))

    @staticmethod
    def _fill_provenance(snapshot: Snapshot, item: WorkItem) -> None:
        ours = provenance_for(item)
        fmt = snapshot.provenance.original_format or (item.primary.suffix.lstrip(".").upper() if item.primary else "")
        ours.original_format = fmt
        ours.original_file_size = item.bytes_in or snapshot.provenance.original_file_size
        ours.original_file_hash = item.sha256 or snapshot.provenance.original_file_hash
        snapshot.provenance = ours

    # ------------------------------------------------------------ classify

    def _classify_loop(self) -> None:
        cfg = self.settings.classification
        while True:
            first = self._classify_q.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + cfg.max_wait_ms / 1000.0
            while self._classifier is not None and len(batch) < cfg.batch_size:
                try:
                    nxt = self._classify_q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue_mod.Empty:
                    break
                if nxt is None:
                    self._classify_q.put(None)
                    break
                batch.append(nxt)
            self._classify_batch(batch)

    def _classify_batch(self, batch: list[WorkItem]) -> None:
        if self._stopping.is_set():
            for item in batch:
                self._ops.put(_Op("release", item))
            return
        for item in batch:
            self._emit_started(item, "classify")
        if self._classifier is not None:
            try:
                self._classifier.classify_batch([item.snapshot for item in batch])
                for item in batch:
                    self._checkpoint(item)
            except Exception as exc:
                for item in batch:
                    self._ops.put(_Op("failed", item, error=exc, stage=EXTRACTED))
                return
        for item in batch:
            self._ops.put(_Op("classified", item))
