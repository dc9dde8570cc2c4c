"""The :class:`Writer`: the only code that writes the database (claims, stage commits, stores, reaps).

Stages hand it their results with :meth:`Writer.submit`; its thread commits them in batches (one
savepoint per item) and only then moves each item on through its :class:`Handoff` (the stages).
"""

from __future__ import annotations

import logging
import queue as queue_mod
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import peewee as pw

from .. import crashpoints
from ..errors import Destill3DError, describe
from ..events import ItemFailed, ItemStored, StageFinished
from ..queue import QueueRow
from ..store import service
from ..store.db import ACQUIRED, CLASSIFIED, EXTRACTED, QUEUED, STORED, dumps, is_fault
from ..text import path_to_text
from .items import BATCH_MAX, IDLE_POLL_S, Op, WorkItem, platform_wait
from .run import RunState

log = logging.getLogger(__name__)

FAULT_RETRY_S = 30.0  # a transient database fault (lock, lost server) is retried this long, then stops the run
NONE_OUTSIDE_TTL_S = 1.0  # how long a claim that found nothing outside the busy platforms is trusted


class _LeaseLost(Exception):
    """The item's lease is no longer ours: roll back this item's savepoint and drop it."""


_REQUEUED = object()  # an op that raised was turned into a "failed" op for the next batch


class Handoff(Protocol):
    """Where the writer sends an item once its stage is committed (:class:`~.stages.Stages`)."""

    def route(self, row: QueueRow) -> None:
        """A claimed row: resume it at its committed stage."""

    def extract(self, item: WorkItem) -> None:
        """An item whose download is committed."""

    def classify(self, item: WorkItem) -> None:
        """An item whose extraction is committed."""


@dataclass
class _WriterClock:
    """When the writer next heartbeats, reaps and claims (monotonic seconds)."""

    next_beat: float = 0.0
    next_reap: float = 0.0
    next_claim: float = 0.0


def _unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (cosine similarity is then a dot product)."""
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class Writer:
    """Owns the operation queue and the writer thread; ``handoff`` takes committed items onward."""

    def __init__(self, run: RunState) -> None:
        self._run = run
        self._ops: queue_mod.Queue[Op] = queue_mod.Queue()
        self._handoff: Handoff | None = None
        self._thread: threading.Thread | None = None
        # exclusion set -> when its "nothing claimable outside these platforms" answer expires
        self._none_outside: dict[frozenset[str], float] = {}

    def connect(self, handoff: Handoff) -> None:
        """The stages committed items move on to (they submit to this writer: set once, after both exist)."""
        self._handoff = handoff

    def submit(self, op: Op) -> None:
        """Queue ``op`` for the next batch (any thread)."""
        self._ops.put(op)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer_loop, name="d3d-writer", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the writer to finish: once a stop is asked and nothing is in flight (or on a fault)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------ the writer thread

    def _writer_loop(self) -> None:
        clock = _WriterClock()
        failing_since: float | None = None
        try:
            while True:
                ops = self._drain_ops()
                try:
                    if self._writer_step(ops, clock):
                        return
                    failing_since = None
                except Exception as exc:
                    fault = self._as_fault(exc)
                    failing_since = failing_since or time.monotonic()
                    if fault.kind != "transient" or time.monotonic() - failing_since > FAULT_RETRY_S:
                        self._stop_for(fault)
                        return
                    for op in ops:  # locked, or the server away for a moment: keep the ops, try again
                        self.submit(op)
                    time.sleep(0.5)
        finally:
            self._run.store.close()

    def _writer_step(self, ops: list[Op], clock: _WriterClock) -> bool:
        """Commit ``ops``, then heartbeat, reap and claim when due. True when the writer is done."""
        run = self._run
        if ops:
            self.apply(ops)
            ops.clear()
        now = time.monotonic()
        if run.stopping.is_set():
            if run.inflight() == 0 and self._ops.empty():
                return True
            if now > run.stop_deadline:
                self._release(run.held())
            return False
        if now >= clock.next_beat:
            run.queue.heartbeat(run.owner)
            clock.next_beat = now + max(0.5, run.settings.pipeline.lease_seconds / 3.0)
        if now >= clock.next_reap:
            self.reap()
            clock.next_reap = now + max(0.5, min(10.0, run.settings.pipeline.lease_seconds / 2.0))
        if not run.paused.is_set() and now >= clock.next_claim:
            got = self._claim()
            clock.next_claim = now if got else now + IDLE_POLL_S
            self._update_idle(got)
        return False

    def _as_fault(self, exc: Exception) -> Destill3DError:
        """The writer's exception as an error to stop on: database faults by cause, anything else a bug."""
        if is_fault(exc):
            return self._run.store.fault(exc)
        log.exception("the database writer failed")
        return Destill3DError(f"the database writer failed: {type(exc).__name__}: {exc}", reason="internal_error")

    def _stop_for(self, fault: Destill3DError) -> None:
        """A fault retrying cannot fix: stop the run. Committed work stays; held items are reaped uncharged."""
        log.info("stopping: %s", fault)  # the caller reports it: one line for the user, not two
        self._run.fault = fault
        self._run.stopping.set()

    def reap(self) -> None:
        """Free stale leases; items that ran out of attempts that way count as failed in this run."""
        _freed, failed = self._run.queue.reap_detailed()
        self._run.summary.failed += len(failed)
        for row in failed:  # reported like any other final failure (headless --json prints a line for each)
            self._run.events.emit(ItemFailed(queue_id=row.queue_id, model_id=row.model_id,
                                             stage=row.error_stage or row.stage, reason=row.reason or "worker_lost",
                                             message=row.last_error or "", attempts=row.retry_count,
                                             will_retry=False))  # fmt: skip

    def _drain_ops(self) -> list[Op]:
        ops: list[Op] = []
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
        return max(3, self._run.settings.pipeline.workers * 3)

    def _claim(self) -> int:
        room = self._capacity() - self._run.inflight()
        if room <= 0:
            return 0
        rows = self.claim_round_robin(room)
        if rows:
            crashpoints.reached("after_claim")
        for row in rows:
            self._next_stages().route(row)
        return len(rows)

    def _next_stages(self) -> Handoff:
        assert self._handoff is not None, "Writer.connect(stages) comes before the writer runs"
        return self._handoff

    def claim_round_robin(self, room: int) -> list[Any]:
        """Claim one item at a time from a platform holding the fewest items in flight.

        Claimed in queue order, one platform's long run (or a platform waiting on its rate budget)
        would hold every slot while the other platforms' budgets sit idle.
        """
        load = self._run.load_by_platform()
        rows: list[Any] = []
        while len(rows) < room:
            row = None
            # level 0 first: a platform with nothing in flight (absent from ``load``) goes before any
            # that has items; the last level excludes nobody
            for level in sorted({0, *load.values()}):
                busier = frozenset(p for p, n in load.items() if n > level)
                if self._known_empty_outside(busier):
                    continue
                got = self._run.queue.claim(self._run.owner, 1, exclude_platforms=busier)
                if got:
                    row = got[0]
                    break
                if busier:
                    self._none_outside[busier] = time.monotonic() + NONE_OUTSIDE_TTL_S
            if row is None:
                return rows
            rows.append(row)
            load[row.platform] += 1
        return rows

    def _known_empty_outside(self, busier: frozenset[str]) -> bool:
        """Whether a claim excluding ``busier`` found nothing within the last :data:`NONE_OUTSIDE_TTL_S`.

        Excluding platforms cannot use the queue's priority index: a claim that finds nothing
        outside the busy platforms reads every active row (22 ms at 100,000 queued, for every
        item claimed while one platform fills the queue). An empty answer stays true for a superset
        of the platforms until items are added or leases lapse, so it is trusted for a second: a
        platform queued meanwhile is still claimed in priority order, its turn first once it expires.
        """
        now = time.monotonic()
        for known, expires in list(self._none_outside.items()):
            if expires <= now:
                del self._none_outside[known]
            elif known <= busier:
                return True
        return False

    def _update_idle(self, claimed: int) -> None:
        run = self._run
        if run.state in ("running", "idle"):
            run.set_state("idle" if claimed == 0 and run.inflight() == 0 else "running")

    def apply(self, ops: list[Op]) -> None:
        """Commit a batch of transitions in one transaction, then move each item on (the writer thread)."""
        store = self._run.store
        done: list[tuple[Op, Any]] = []
        ops = [self._handed_back(op) for op in ops]
        self._check_near_duplicates(ops)  # before the transaction: the index may reconcile (reads only)
        with store.atomic(immediate=True):
            for op in ops:
                try:
                    with store.database.atomic():  # a savepoint: one item's failure stays its own
                        done.append((op, self._commit(op)))
                except _LeaseLost:
                    service.tags_rolled_back(store)
                    done.append((op, _LeaseLost))
                except Exception as exc:
                    service.tags_rolled_back(store)
                    if is_fault(exc):
                        raise  # the database (full, locked, damaged), not this item: the writer decides
                    done.append((op, self._op_failed(op, exc)))
            if any(op.kind == "store" for op, _ in done):
                for op, result in done:
                    if op.kind == "store" and result is not _LeaseLost:
                        crashpoints.reached("before_store_commit")
        service.tags_committed(store)
        for op, result in done:
            self._after_commit(op, result)

    def _handed_back(self, op: Op) -> Op:
        """An extraction cancelled by stop() is handed back uncharged, not failed."""
        cancelled = op.kind == "failed" and describe(op.error or Exception())["reason"] == "cancelled"
        return Op("release", op.item) if cancelled and self._run.stopping.is_set() else op

    def _check_near_duplicates(self, ops: list[Op]) -> None:
        """With ``pipeline.skip_near_duplicates``, mark store ops whose object is already stored.

        Each snapshot is checked against the index and against the ones this batch accepts
        before it (they are not in the index yet: two copies in one batch must not both be stored).
        """
        settings, store = self._run.settings, self._run.store
        if not settings.pipeline.skip_near_duplicates:
            return
        from ..store.duplicates import is_near_duplicate, shape_descriptor

        accepted: list[tuple[str, np.ndarray]] = []
        threshold = settings.pipeline.near_duplicate_threshold
        for op in ops:
            if op.kind == "store" and op.item.snapshot is not None:
                snap = op.item.snapshot
                if service.snapshot_id_for_hash(store, snap.provenance.original_file_hash):
                    continue  # the same file: _commit_store records it as an exact "duplicate"
                try:
                    op.duplicate_of = is_near_duplicate(snap, store, settings)
                    descriptor = _unit(shape_descriptor(snap.geometry.points))
                except Exception:  # a broken index must not lose the item: store it as usual
                    log.exception("near-duplicate check failed for %s", op.item.model_id)
                    op.duplicate_of = None
                    continue
                if op.duplicate_of is None:
                    op.duplicate_of = next((sid for sid, d in accepted if float(d @ descriptor) >= threshold), None)
                    op.in_batch = op.duplicate_of is not None
                if op.duplicate_of is None:
                    accepted.append((snap.snapshot_id, descriptor))

    def _op_failed(self, op: Op, exc: Exception) -> Any:
        """An op that raised: the item fails at the stage it was committing (or is dropped)."""
        if op.kind in ("failed", "release"):
            return _LeaseLost  # nothing more to record here; its lease expires and the reaper decides
        before = {"acquired": QUEUED, "duplicate": QUEUED, "extracted": ACQUIRED, "classified": EXTRACTED}
        self.submit(Op("failed", op.item, error=exc, stage=before.get(op.kind, CLASSIFIED)))
        return _REQUEUED

    def _commit(self, op: Op) -> Any:
        item, q, owner = op.item, self._run.queue, self._run.owner
        if op.kind == "acquired":
            meta = {**item.row.metadata, **item.metadata}
            held = q.advance(item.queue_id, owner, ACQUIRED, temp_path=str(item.temp_dir),
                             primary_path=path_to_text(item.primary), file_hash=item.sha256, bytes_in=item.bytes_in,
                             metadata=dumps(meta))  # fmt: skip
            if held and item.siblings:  # the archive's other model files: queued with this transition
                q.add_entries(item.siblings)
        elif op.kind == "duplicate":
            held = q.advance(item.queue_id, owner, STORED, reason="duplicate", duplicate_of=op.duplicate_of,
                             file_hash=item.sha256, bytes_in=item.bytes_in)  # fmt: skip
        elif op.kind == "extracted":
            held = q.advance(item.queue_id, owner, EXTRACTED, temp_path=str(item.temp_dir), reason=None)
        elif op.kind == "classified":
            held = q.advance(item.queue_id, owner, CLASSIFIED)
        elif op.kind == "store":
            twin = "SELECT 1 FROM snapshots WHERE snapshot_id = ?"
            if op.in_batch and self._run.store.execute(twin, (op.duplicate_of,)).fetchone() is None:
                op.duplicate_of = None  # its twin earlier in the batch failed to store: this one is the first
            if op.duplicate_of:  # near duplicate (checked before the transaction): nothing stored
                held = q.advance(item.queue_id, owner, STORED, reason="near_duplicate", duplicate_of=op.duplicate_of,
                                 file_hash=item.sha256, bytes_in=item.bytes_in)  # fmt: skip
                if not held:
                    raise _LeaseLost
                return op.duplicate_of
            return self._commit_store(item)
        elif op.kind == "failed":
            held, final = q.fail(item.queue_id, owner, describe(op.error), op.stage,
                                 retry_after=getattr(op.error, "retry_after", None),
                                 refund=platform_wait(op.error))  # fmt: skip
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
        store, queue, owner = self._run.store, self._run.queue, self._run.owner
        snap = item.snapshot
        assert snap is not None and item.blob is not None
        first = service.snapshot_id_for_hash(store, snap.provenance.original_file_hash)
        if first is None:
            existing = service.snapshot_id_for_model(store, item.model_id)
            if existing is not None:  # stored by an earlier attempt under this model id
                if not queue.advance(item.queue_id, owner, STORED, snapshot_id=existing):
                    raise _LeaseLost
                return None
            try:
                with store.database.atomic():
                    service.insert_snapshot(store, snap, item.blob, group_id=item.row.group_id)
            except pw.IntegrityError:
                first = service.snapshot_id_for_hash(store, snap.provenance.original_file_hash)
                if first is None:
                    raise
        if first is not None:
            held = queue.advance(item.queue_id, owner, STORED, reason="duplicate", duplicate_of=first)
        else:
            held = queue.advance(item.queue_id, owner, STORED, snapshot_id=snap.snapshot_id, reason=None)
        if not held:
            raise _LeaseLost
        return first

    # ------------------------------------------------------------ after the commit: move items on

    def _after_commit(self, op: Op, result: Any) -> None:
        item = op.item
        if result is _REQUEUED:
            return
        if result is _LeaseLost:
            self._run.forget(item)
            return
        handlers: dict[str, Callable[[], None]] = {
            "acquired": lambda: self._next(item, "acquire", "after_acquire_commit", self._next_stages().extract),
            "extracted": lambda: self._next(item, "extract", "after_extract_commit", self._next_stages().classify),
            "classified": lambda: self._next(item, "classify", "after_classify_commit",
                                             lambda it: self.submit(Op("store", it))),
            "duplicate": lambda: self._finished_stored(item, op.duplicate_of),
            "store": lambda: self._finished_stored(item, result, crash_point="after_store_commit"),
            "failed": lambda: self._finished_failed(item, op, bool(result)),
            "release": lambda: self._release([item]),
        }  # fmt: skip
        handlers[op.kind]()

    def _next(self, item: WorkItem, stage: str, point: str, forward: Callable[[WorkItem], None]) -> None:
        self._run.events.emit(StageFinished(queue_id=item.queue_id, model_id=item.model_id, stage=stage,
                                            ms=(time.monotonic() - item.started) * 1000))  # fmt: skip
        crashpoints.reached(point)
        if self._run.stopping.is_set():
            self._release([item])
        else:
            forward(item)

    def _release(self, items: list[WorkItem]) -> None:
        self._run.queue.release([i.queue_id for i in items], self._run.owner, refund=True)
        for item in items:
            self._run.forget(item)

    def _finished_stored(self, item: WorkItem, duplicate_of: str | None, crash_point: str | None = None) -> None:
        run = self._run
        if crash_point:
            crashpoints.reached(crash_point)
        run.remove_temp(item)
        run.forget(item)
        snapshot_id = item.snapshot.snapshot_id if item.snapshot is not None and not duplicate_of else ""
        if duplicate_of:
            run.summary.duplicates += 1
        run.summary.stored += 1
        run.events.emit(ItemStored(queue_id=item.queue_id, model_id=item.model_id, snapshot_id=snapshot_id,
                                   bytes_in=item.bytes_in, bytes_kept=0 if duplicate_of else len(item.blob or b""),
                                   duplicate_of=duplicate_of))  # fmt: skip

    def _finished_failed(self, item: WorkItem, op: Op, final: bool) -> None:
        run = self._run
        info = describe(op.error) if op.error is not None else {"reason": "internal_error", "message": ""}
        if final:
            run.summary.failed += 1
            if not run.settings.pipeline.keep_failed_temp:
                run.remove_temp(item)
        run.forget(item)
        run.events.emit(ItemFailed(queue_id=item.queue_id, model_id=item.model_id, stage=op.stage,
                                   reason=info["reason"], message=info["message"],
                                   attempts=item.row.retry_count, will_retry=not final))  # fmt: skip
