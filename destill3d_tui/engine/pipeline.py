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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import queue as queue_mod
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee as pw

from . import locations
from .config import Settings
from .errors import DownloadError, PlatformError, RateLimitError, describe
from .events import EventBus, ItemFailed, ItemStored, PipelineStateChanged, StageFinished, StageStarted
from .queue import Queue, QueueRow, make_owner
from .store import service
from .store.db import ACQUIRED, CLASSIFIED, EXTRACTED, FAILED, FINAL_STAGES, QUEUED, STORED, Store, dumps
from .store.snapshot import Provenance, Snapshot

CHECKPOINT = "snapshot.d3d"
BATCH_MAX = 200  # ops per writer transaction: large enough to amortise commits, small enough to stay responsive
IDLE_POLL_S = 0.25  # how often an idle writer looks for new work
log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    stored: int = 0
    failed: int = 0
    duplicates: int = 0
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- crash hook (tests)


class _CrashHook:
    """``DESTILL3D_CRASH_AT=point:n``: ``os._exit(137)`` the n-th time ``point`` is reached."""

    POINTS = (
        "after_claim",
        "after_acquire_commit",
        "after_extract_commit",
        "after_classify_commit",
        "before_store_commit",
        "after_store_commit",
    )

    def __init__(self, spec: str | None) -> None:
        self.point, self.count, self.seen = "", 0, 0
        if spec:
            point, _, n = spec.partition(":")
            self.point, self.count = point.strip(), int(n or 1)

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        if self.seen >= self.count:
            os._exit(137)


# ---------------------------------------------------------------- extraction


def extraction_options(settings: Settings, **overrides: Any) -> Any:
    from .extract.types import ExtractOptions

    return ExtractOptions.from_settings(settings.extraction, **overrides)


def extract_in_process(path: Path, settings: Settings, **opts: Any) -> Snapshot:
    """One file -> Snapshot in this process (``d3d.extract.from_file``)."""
    from .extract import extract_file

    options = opts.pop("options", None)
    provenance = opts.pop("provenance", None)
    if options is None:
        options = extraction_options(
            settings,
            points=opts.pop("points", None),
            strategy=opts.pop("strategy", None),
            views=opts.pop("views", None),
            seed=opts.pop("seed", None),
            precision=opts.pop("precision", None),
        )
    if opts:
        raise TypeError(f"unknown extraction options: {', '.join(sorted(opts))}")
    snapshot = extract_file(path, options=options, provenance=provenance)
    return snapshot


def make_supervisor(settings: Settings) -> Any:
    from .extract.isolate import ExtractionSupervisor

    ex = settings.extraction
    # Test hook: DESTILL3D_EXTRACT_TARGET="module:function" runs that in the children instead
    # (tests use it to make a parser segfault, hang or allocate without end).
    target = os.environ.get("DESTILL3D_EXTRACT_TARGET")
    kwargs = {"target": target} if target else {}
    return ExtractionSupervisor(settings.pipeline.workers, ex.timeout_s, ex.memory_limit_mb, **kwargs)


# ---------------------------------------------------------------- work items


@dataclass
class WorkItem:
    row: QueueRow
    temp_dir: Path
    primary: Path | None = None
    sha256: str = ""
    bytes_in: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    blob: bytes | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def queue_id(self) -> int:
        return self.row.queue_id

    @property
    def model_id(self) -> str:
        return self.row.model_id


@dataclass
class _Op:
    kind: str  # acquired | duplicate | extracted | classified | store | failed | release
    item: WorkItem
    error: BaseException | None = None
    stage: str = ""
    duplicate_of: str | None = None


def _platform_wait(error: BaseException | None) -> bool:
    """The platform, not the item, refused (rate limited or banned): the attempt does not count."""
    if isinstance(error, RateLimitError):
        return True
    return isinstance(error, PlatformError) and getattr(error, "reason", "") in ("banned", "rate_limited")


class _LeaseLost(Exception):
    """The item's lease is no longer ours: roll back this item's savepoint and drop it."""


_REQUEUED = object()  # an op that raised was turned into a "failed" op for the next batch


def _metadata_from_download(meta: Any) -> dict[str, Any]:
    if meta is None:
        return {}
    lic = meta.license
    out = {
        "title": meta.title,
        "author": meta.author,
        "description": meta.description,
        "source_url": meta.source_url,
        "license": {"raw": lic.raw, "spdx": lic.spdx, "commercial": lic.commercial,
                    "derivatives": lic.derivatives, "share_alike": lic.share_alike, "attribution": lic.attribution},
        "tags": list(meta.tags),
        "created": meta.created_at,
        "modified": meta.modified_at,
    }  # fmt: skip
    return {k: v for k, v in out.items() if v not in ("", None, [])}


def provenance_for(item: WorkItem) -> Provenance:
    """Provenance from the queue row's metadata plus what acquisition learned."""
    meta = {**item.row.metadata, **item.metadata}
    lic = meta.get("license") or {}
    if isinstance(lic, str):
        lic = {"raw": lic}
    flags = {k: bool(lic[k]) for k in ("commercial", "derivatives", "share_alike", "attribution") if k in lic}
    row = item.row
    return Provenance(
        platform=row.platform,
        source_url=meta.get("source_url") or row.source_url,
        source_id=row.source_id,
        title=str(meta.get("title") or ""),
        description=str(meta.get("description") or "")[:4000],
        author=str(meta.get("author") or ""),
        license=str(lic.get("raw") or ""),
        license_spdx=str(lic.get("spdx") or meta.get("license_spdx") or ""),
        license_flags=flags or dict(meta.get("license_flags") or {}),
        tags=[str(t) for t in meta.get("tags") or []],
        original_filename=item.primary.name if item.primary else str(meta.get("original_filename") or ""),
        original_file_size=item.bytes_in,
        original_file_hash=item.sha256,
        source_created=str(meta.get("created") or ""),
        source_modified=str(meta.get("modified") or ""),
        acquired_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


# ---------------------------------------------------------------- the pipeline


class Pipeline:
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

    # ------------------------------------------------------------ helpers

    def _load_classifier(self) -> Any:
        if not self.settings.classification.enabled:
            return None
        from .classify.stage import load_stage_classifier

        return load_stage_classifier(self.settings)

    def _adapter(self, platform: str) -> Any:
        if platform not in self._adapters:
            try:
                from .acquire.registry import get_adapter
            except ImportError:
                get_adapter = None
            if get_adapter is not None:
                self._adapters[platform] = get_adapter(platform, self.settings, emit=self.events.emit)
            elif platform == "local":
                from .acquire.platforms.local import LocalAdapter

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
        item.primary = Path(row.primary_path) if row.primary_path else None
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
        if self._stopping.is_set():
            self._ops.put(_Op("release", item))
            return
        self._emit_started(item, "acquire")
        try:
            async with self._download_slots:
                adapter = self._adapter(item.row.platform)
                target = item.temp_dir / "files"
                await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
                result = await adapter.download(item.row.source_id, target, item.row.file_id)
            item.primary, item.sha256, item.bytes_in = Path(result.primary), result.sha256, int(result.bytes_downloaded)
            item.metadata = _metadata_from_download(result.metadata)
            first = await asyncio.to_thread(service.snapshot_id_for_hash, self.store, item.sha256)
        except Exception as exc:
            self._ops.put(_Op("failed", item, error=exc, stage=QUEUED))
            return
        if first is not None:
            self._ops.put(_Op("duplicate", item, duplicate_of=first))
        else:
            self._ops.put(_Op("acquired", item))

    # ------------------------------------------------------------ extract

    def _submit_extract(self, item: WorkItem) -> None:
        if self._stopping.is_set():
            self._ops.put(_Op("release", item))
            return
        self._emit_started(item, "extract")
        assert item.primary is not None
        try:
            future = self._supervisor.submit(item.queue_id, item.primary, extraction_options(self.settings),
                                             provenance_for(item))  # fmt: skip
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

    # ------------------------------------------------------------ writer

    def _writer_loop(self) -> None:
        next_beat = next_reap = next_claim = 0.0
        beat_every = max(0.5, self.settings.pipeline.lease_seconds / 3.0)
        reap_every = max(0.5, min(10.0, self.settings.pipeline.lease_seconds / 2.0))
        try:
            while True:
                ops = self._drain_ops()
                try:
                    if ops:
                        self._apply(ops)
                        ops = []
                    now = time.monotonic()
                    if self._stopping.is_set():
                        if self.inflight == 0 and self._ops.empty():
                            return
                        if now > self._stop_deadline:
                            with self._lock:
                                stuck = list(self._inflight.values())
                            self._release(stuck)
                        continue
                    if now >= next_beat:
                        self.queue.heartbeat(self.owner)
                        next_beat = now + beat_every
                    if now >= next_reap:
                        self._reap()
                        next_reap = now + reap_every
                    if not self._paused.is_set() and now >= next_claim:
                        got = self._claim()
                        next_claim = now if got else now + IDLE_POLL_S
                        self._update_idle(got)
                except pw.OperationalError:
                    # Locked or unreachable database: keep the ops and try again shortly.
                    for op in ops:
                        self._ops.put(op)
                    time.sleep(0.5)
        finally:
            self.store.close()

    def _reap(self) -> None:
        """Free stale leases; items that ran out of attempts that way count as failed in this run."""
        _freed, failed = self.queue.reap_detailed()
        self._summary.failed += len(failed)
        for row in failed:  # reported like any other final failure (headless --json prints a line for each)
            self.events.emit(ItemFailed(queue_id=row.queue_id, model_id=row.model_id,
                                        stage=row.error_stage or row.stage, reason=row.reason or "worker_lost",
                                        message=row.last_error or "", attempts=row.retry_count,
                                        will_retry=False))  # fmt: skip

    def _drain_ops(self) -> list[_Op]:
        ops: list[_Op] = []
        try:
            ops.append(self._ops.get(timeout=0.05))
            while len(ops) < BATCH_MAX:
                ops.append(self._ops.get_nowait())
        except queue_mod.Empty:
            pass
        return ops

    def _capacity(self) -> int:
        # Enough to keep every extraction child busy while the next items download, and no more:
        # items claimed here sit leased, and other machines sharing the queue cannot take them.
        return max(3, self.settings.pipeline.workers * 3)

    def _claim(self) -> int:
        room = self._capacity() - self.inflight
        if room <= 0:
            return 0
        rows = self.queue.claim(self.owner, room)
        if rows:
            self._crash.reached("after_claim")
        for row in rows:
            self._route(row)
        return len(rows)

    def _update_idle(self, claimed: int) -> None:
        if self._state in ("running", "idle"):
            self._set_state("idle" if claimed == 0 and self.inflight == 0 else "running")

    def _apply(self, ops: list[_Op]) -> None:
        """Commit a batch of transitions in one transaction, then move each item on."""
        done: list[tuple[_Op, Any]] = []
        self._check_near_duplicates(ops)  # before the transaction: the index may reconcile (reads only)
        with self.store.atomic(immediate=True):
            for op in ops:
                try:
                    with self.store.database.atomic():  # a savepoint: one item's failure stays its own
                        done.append((op, self._commit(op)))
                except _LeaseLost:
                    service.tags_rolled_back(self.store)
                    done.append((op, _LeaseLost))
                except pw.OperationalError:
                    service.tags_rolled_back(self.store)
                    raise  # the connection or lock, not this item: the whole batch is retried
                except Exception as exc:
                    service.tags_rolled_back(self.store)
                    done.append((op, self._op_failed(op, exc)))
            if any(op.kind == "store" for op, _ in done):
                for op, result in done:
                    if op.kind == "store" and result is not _LeaseLost:
                        self._crash.reached("before_store_commit")
        service.tags_committed(self.store)
        for op, result in done:
            self._after_commit(op, result)

    def _check_near_duplicates(self, ops: list[_Op]) -> None:
        """With ``pipeline.skip_near_duplicates``, mark store ops whose object is already stored."""
        if not self.settings.pipeline.skip_near_duplicates:
            return
        from .store.duplicates import is_near_duplicate

        for op in ops:
            if op.kind == "store" and op.item.snapshot is not None:
                if service.snapshot_id_for_hash(self.store, op.item.snapshot.provenance.original_file_hash):
                    continue  # the same file: _commit_store records it as an exact "duplicate"
                try:
                    op.duplicate_of = is_near_duplicate(op.item.snapshot, self.store, self.settings)
                except Exception:  # a broken index must not lose the item: store it as usual
                    log.exception("near-duplicate check failed for %s", op.item.model_id)
                    op.duplicate_of = None

    def _op_failed(self, op: _Op, exc: Exception) -> Any:
        """An op that raised: the item fails at the stage it was committing (or is dropped)."""
        if op.kind in ("failed", "release"):
            return _LeaseLost  # nothing more to record here; its lease expires and the reaper decides
        before = {"acquired": QUEUED, "duplicate": QUEUED, "extracted": ACQUIRED, "classified": EXTRACTED}
        self._ops.put(_Op("failed", op.item, error=exc, stage=before.get(op.kind, CLASSIFIED)))
        return _REQUEUED

    def _commit(self, op: _Op) -> Any:
        item, q, owner = op.item, self.queue, self.owner
        if op.kind == "acquired":
            meta = {**item.row.metadata, **item.metadata}
            held = q.advance(item.queue_id, owner, ACQUIRED, temp_path=str(item.temp_dir),
                             primary_path=str(item.primary), file_hash=item.sha256, bytes_in=item.bytes_in,
                             metadata=dumps(meta))  # fmt: skip
        elif op.kind == "duplicate":
            held = q.advance(item.queue_id, owner, STORED, reason="duplicate", duplicate_of=op.duplicate_of,
                             file_hash=item.sha256, bytes_in=item.bytes_in)  # fmt: skip
        elif op.kind == "extracted":
            held = q.advance(item.queue_id, owner, EXTRACTED, temp_path=str(item.temp_dir), reason=None)
        elif op.kind == "classified":
            held = q.advance(item.queue_id, owner, CLASSIFIED)
        elif op.kind == "store":
            if op.duplicate_of:  # near duplicate (checked before the transaction): nothing stored
                held = q.advance(item.queue_id, owner, STORED, reason="near_duplicate", duplicate_of=op.duplicate_of,
                                 file_hash=item.sha256, bytes_in=item.bytes_in)  # fmt: skip
                if not held:
                    raise _LeaseLost
                return op.duplicate_of
            return self._commit_store(item)
        elif op.kind == "failed":
            platform_wait = _platform_wait(op.error)
            held, final = q.fail(item.queue_id, owner, describe(op.error), op.stage,
                                 retry_after=getattr(op.error, "retry_after", None), refund=platform_wait)  # fmt: skip
            if not held:
                raise _LeaseLost
            return final
        elif op.kind == "release":
            return None
        else:
            raise ValueError(op.kind)
        if not held:
            raise _LeaseLost
        return None

    def _commit_store(self, item: WorkItem) -> str | None:
        """Insert the snapshot and mark the row stored; returns the duplicate's first id, if any."""
        snap = item.snapshot
        assert snap is not None and item.blob is not None
        first = service.snapshot_id_for_hash(self.store, snap.provenance.original_file_hash)
        if first is None:
            existing = service.snapshot_id_for_model(self.store, item.model_id)
            if existing is not None:  # stored by an earlier attempt under this model id
                if not self.queue.advance(item.queue_id, self.owner, STORED, snapshot_id=existing):
                    raise _LeaseLost
                return None
            try:
                with self.store.database.atomic():
                    service.insert_snapshot(self.store, snap, item.blob, group_id=item.row.group_id)
            except pw.IntegrityError:
                first = service.snapshot_id_for_hash(self.store, snap.provenance.original_file_hash)
                if first is None:
                    raise
        if first is not None:
            held = self.queue.advance(item.queue_id, self.owner, STORED, reason="duplicate", duplicate_of=first)
        else:
            held = self.queue.advance(item.queue_id, self.owner, STORED, snapshot_id=snap.snapshot_id, reason=None)
        if not held:
            raise _LeaseLost
        return first

    def _after_commit(self, op: _Op, result: Any) -> None:
        item = op.item
        if result is _REQUEUED:
            return
        if result is _LeaseLost:
            self._forget(item)
            return
        handlers: dict[str, Callable[[], None]] = {
            "acquired": lambda: self._next(item, "acquire", "after_acquire_commit", self._submit_extract),
            "extracted": lambda: self._next(item, "extract", "after_extract_commit", self._classify_q.put),
            "classified": lambda: self._next(item, "classify", "after_classify_commit",
                                             lambda it: self._ops.put(_Op("store", it))),
            "duplicate": lambda: self._finished_stored(item, op.duplicate_of),
            "store": lambda: self._finished_stored(item, result, crash_point="after_store_commit"),
            "failed": lambda: self._finished_failed(item, op, bool(result)),
            "release": lambda: self._release([item]),
        }  # fmt: skip
        handlers[op.kind]()

    def _next(self, item: WorkItem, stage: str, point: str, forward: Callable[[WorkItem], None]) -> None:
        self.events.emit(StageFinished(queue_id=item.queue_id, model_id=item.model_id, stage=stage,
                                       ms=(time.monotonic() - item.started) * 1000))  # fmt: skip
        self._crash.reached(point)
        if self._stopping.is_set():
            self._release([item])
        else:
            forward(item)

    def _forget(self, item: WorkItem) -> None:
        with self._lock:
            self._inflight.pop(item.queue_id, None)

    def _release(self, items: list[WorkItem]) -> None:
        self.queue.release([i.queue_id for i in items], self.owner, refund=True)
        for item in items:
            self._forget(item)

    def _finished_stored(self, item: WorkItem, duplicate_of: str | None, crash_point: str | None = None) -> None:
        if crash_point:
            self._crash.reached(crash_point)
        self._remove_temp(item)
        self._forget(item)
        snapshot_id = item.snapshot.snapshot_id if item.snapshot is not None and not duplicate_of else ""
        if duplicate_of:
            self._summary.duplicates += 1
        self._summary.stored += 1
        self.events.emit(ItemStored(queue_id=item.queue_id, model_id=item.model_id, snapshot_id=snapshot_id,
                                    bytes_in=item.bytes_in, bytes_kept=0 if duplicate_of else len(item.blob or b""),
                                    duplicate_of=duplicate_of))  # fmt: skip

    def _finished_failed(self, item: WorkItem, op: _Op, final: bool) -> None:
        info = describe(op.error) if op.error is not None else {"reason": "internal_error", "message": ""}
        if final:
            self._summary.failed += 1
            if not self.settings.pipeline.keep_failed_temp:
                self._remove_temp(item)
        self._forget(item)
        self.events.emit(ItemFailed(queue_id=item.queue_id, model_id=item.model_id, stage=op.stage,
                                    reason=info["reason"], message=info["message"],
                                    attempts=item.row.retry_count, will_retry=not final))  # fmt: skip


__all__ = ["DownloadError", "Pipeline", "RunSummary", "WorkItem", "extract_in_process"]
