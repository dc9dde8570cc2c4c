"""The write scan of an export: snapshots in key order, in large batches, decoded and routed
to their split's open shard; completed shards are recorded so an interrupted export resumes.

Memory is bounded by one batch of blobs plus what the open shards buffer (a row group, an HDF5
slab, or a NumPy shard), never by the collection: the selection is compact arrays
(:mod:`.selection`), attribution lines go to a file per shard as they are written, and the card
is tallied from per-shard counts.

Decoding stays in this process: with the compiled decode (:mod:`.kernels`) and the geometry
read alone, a snapshot costs about 0.1 ms to read and decode (bench/scale.py prints both),
comparable to what shipping its 48 KB of arrays back from a worker process would cost. The
shard files are written by threads of their own (:mod:`.parquet`, :mod:`.webdataset`), so on
the 2-core development machine the export's thread and the writers already keep both cores
busy (30,000 snapshots to Parquet: 3.9 CPU-s here, 5.7 in the writers) and a worker process
would have no idle core to run on.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lz4.frame
import msgpack
import numpy as np

from .. import provenance
from ..snapshot import FORMAT_MAJOR, MAGIC, Snapshot, SnapshotFormatError, _unarray
from . import common, kernels
from .common import ExportLayout, ExportRecord
from .selection import Selection, keyset
from .shards import PARTIAL, ExportState, ShardDone, ShardedExporter, ShardWriter

if TYPE_CHECKING:
    from ..db import Store

BLOB_BATCH = 1000
"""Snapshots per keyset query of the write scan: about 23 MB of blobs, 100 MB decoded."""
PROGRESS_EVERY_S = 0.1
"""Progress events at most ten times a second (a bar redraws no faster)."""
ROW_COLUMNS = ("snapshot_id", *provenance.COLUMNS.values(), "best_guess", "snapshot_data")
_DATA, _GUESS = len(ROW_COLUMNS), ROW_COLUMNS.index("best_guess") + 1  # positions in a scanned row (key first)
_provenance_of = provenance.tuple_reader(ROW_COLUMNS, first=1)  # a scanned row starts with its key
_ROW_SELECT = ", ".join(provenance.BEST_GUESS_SQL if name == "best_guess" else name for name in ROW_COLUMNS)


def decode_arrays(blob: bytes, views: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(points, normals, views or None) of a stored snapshot, decoding nothing else.

    Equal to ``Snapshot.from_bytes(blob).geometry``'s arrays (a test checks it); another major
    version, or anything malformed in what it reads (the frame, the map down to the geometry, the
    arrays), raises :class:`SnapshotFormatError` as ``from_bytes`` does; the fields it skips are
    only walked.
    """
    data = bytes(blob)
    if len(data) < 5 or data[:3] != MAGIC or data[3] != FORMAT_MAJOR:
        g = Snapshot.from_bytes(data).geometry  # raises the codec's own message
        return g.points, g.normals, g.views
    try:
        geometry = _geometry(lz4.frame.decompress(memoryview(data)[5:]))
        n = int(geometry["n"])
        if "points" in geometry:
            points, normals = _unarray(geometry["points"]), _unarray(geometry["normals"])
        else:
            points, normals = kernels.points(geometry["points_q"], n), kernels.normals(geometry["normals_q"], n)
        shown = _unarray(geometry.get("views")) if views else None
    except Exception as exc:
        raise SnapshotFormatError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from exc
    return np.asarray(points, np.float32), np.asarray(normals, np.float32), shown


_GEOMETRY_KEYS = frozenset(("n", "points", "normals", "points_q", "normals_q", "views"))


def _geometry(payload: bytes) -> dict[str, Any]:
    """The snapshot's ``geometry`` map, holding only what an export reads (``msgpack.Unpacker``
    skips the other fields without building them: 10 instead of 30 us a snapshot)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(payload))
    unpacker.feed(payload)
    for _ in range(unpacker.read_map_header()):
        if unpacker.unpack() != "geometry":
            unpacker.skip()
            continue
        geometry = {}
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in _GEOMETRY_KEYS:
                geometry[key] = unpacker.unpack()
            else:
                unpacker.skip()
        return geometry
    raise KeyError("geometry")


@dataclass
class Tally:
    """What the card and the result need, counted as records are written."""

    labels: dict[str, Counter[str]] = field(default_factory=dict)  # split -> label -> n
    licences: Counter[str] = field(default_factory=Counter)
    written: Counter[str] = field(default_factory=Counter)  # split -> n

    def add(self, split: str, label: str, licence: str, n: int = 1) -> None:
        self.labels.setdefault(split, Counter())[label] += n
        self.licences[licence] += n
        self.written[split] += n


@dataclass
class _Open:
    """An open shard of one split, its pending records and its attribution lines."""

    writer: ShardWriter
    index: int
    name: str
    attribution: Any  # text file
    pending: list[ExportRecord] = field(default_factory=list)
    labels: Counter[str] = field(default_factory=Counter)
    licences: Counter[str] = field(default_factory=Counter)

    @property
    def rows(self) -> int:
        return self.writer.rows + len(self.pending)


class StreamExport:
    """One export's write scan (see the module docstring)."""

    def __init__(
        self, store: Store, exporter: common.Exporter, layout: ExportLayout, selection: Selection,
        where: tuple[str, list[Any]], *, cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None, batch: int = BLOB_BATCH,
    ) -> None:  # fmt: skip
        self.store, self.exporter, self.layout, self.sel = store, exporter, layout, selection
        self.where, self.params = where
        self.cancel, self.progress, self.batch = cancel, progress, batch
        self.tally = Tally()
        self.unreadable = 0
        self.interrupted = False
        self.files: list[Path] = []
        self._last_progress = 0.0

    # ------------------------------------------------------------------ shared

    def _records(self, rows: list[tuple]) -> list[tuple[Any, ExportRecord]]:
        """(scan key, record) for the rows of a batch that the selection takes, in key order.

        The selection's arrays are looked up once per batch (hashes, labels, splits, confidences
        as lists), so a row costs its decode and a few dict and list operations."""
        sel = self.sel
        positions = sel.positions([row[1] for row in rows]).tolist()
        found = [(row, pos) for row, pos in zip(rows, positions, strict=True) if pos >= 0]
        if not found:
            return []
        at = np.fromiter((pos for _, pos in found), np.int64, len(found))
        splits = [common.SPLIT_NAMES[code] for code in sel.splits[at].tolist()]
        labels, confidences = sel.labels[at].tolist(), sel.confidence[at].tolist()
        views, shape = self.layout.views, self.layout.view_shape
        out = []
        for (row, _), split, label_index, confidence in zip(found, splits, labels, confidences, strict=True):
            key = row[0]
            if not self._wanted(key, split):
                continue
            try:
                points, normals, shown = decode_arrays(row[_DATA], views)
            except SnapshotFormatError:
                self.unreadable += 1  # counted and left out: one damaged blob never stops an export
                continue
            meta = _provenance_of(row)
            meta["confidence"] = None if math.isnan(confidence) else confidence
            meta["best_guess"] = row[_GUESS] or ""  # beside an ``unknown`` label; "" otherwise
            if views and shape and (shown is None or tuple(shown.shape) != shape):
                meta["has_views"] = False
                shown = np.zeros(shape, np.uint8)
            out.append((key, ExportRecord(snapshot_id=row[1], points=points, normals=normals,
                                          label=sel.label_names[label_index], label_index=label_index, split=split,
                                          metadata=meta, views=shown if views else None)))  # fmt: skip
        return out

    def _wanted(self, key: Any, split: str) -> bool:
        return True

    def _report(self, done: int, final: bool = False) -> None:
        if self.progress and (final or time.monotonic() - self._last_progress >= PROGRESS_EVERY_S):
            self._last_progress = time.monotonic()
            self.progress(done, self.sel.count - self.unreadable)

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _scan(self, after: Any = None) -> Any:
        return keyset(self.store, _ROW_SELECT, self.where, self.params, self.batch, after=after)

    # ------------------------------------------------------------------ record-by-record formats

    def run_records(self, attribution: Path | None) -> list[Path]:
        """Formats without shards (ModelNet folders, in-memory arrays): one pass, no resume."""
        exporter = self.exporter
        exporter.begin(self.layout)
        handle = attribution.open("w", encoding="utf-8") if attribution else None
        try:
            for rows in self._scan():
                if self._cancelled():
                    self.interrupted = True
                    exporter.abort()
                    return []
                for _, record in self._records(rows):
                    item = exporter.write(record)
                    self.tally.add(record.split, record.label, _licence(record))
                    if handle:
                        handle.write(common.JSON_TEXT.encode(common.attribution_entry(record, item)) + "\n")
                self._report(sum(self.tally.written.values()))
            self.files = exporter.finish()
        except BaseException:
            exporter.abort()
            raise
        finally:
            if handle:
                handle.close()
        self._report(sum(self.tally.written.values()), final=True)
        return self.files


class ShardedRun(StreamExport):
    """The write scan of a sharded format, resumable from ``state``."""

    def __init__(self, *args: Any, state: ExportState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = state
        self.sharded: ShardedExporter = self.exporter  # type: ignore[assignment]
        self.open: dict[str, _Open] = {}
        for split, shards in state.done.items():  # what a previous run completed
            for done in shards:
                self.tally.labels.setdefault(split, Counter()).update(done.labels)
                self.tally.licences.update(done.licences)
                self.tally.written[split] += done.rows

    @property
    def output(self) -> Path:
        return self.layout.output

    def shard_names(self, split: str) -> list[str]:
        total = self.state.totals[split]
        return [self.sharded.shard_name(split, i, total) for i in range(total)]

    def _wanted(self, key: Any, split: str) -> bool:
        if self.state.completed(split) >= self.state.totals[split]:
            return False
        through = self.state.done_through(split)
        # keys compare here as the scan ordered them: rowids, or (PostgreSQL) snapshot ids, which
        # are UUID strings of one shape, so Python's order and the collation's agree
        return through is None or key > through

    def run(self) -> bool:
        """Writes every missing shard; False when cancelled (completed shards stay recorded)."""
        self.sharded.begin(self.layout)
        incomplete = [s for s in self.state.totals if self.state.completed(s) < self.state.totals[s]]
        starts = [self.state.done_through(s) for s in incomplete]
        after = None if not starts or None in starts else min(starts)
        last_key = after
        try:
            for rows in self._scan(after):
                if self._cancelled():
                    self._discard_open()
                    self.interrupted = True
                    return False
                for key, record in self._records(rows):
                    self._add(key, record)
                last_key = rows[-1][0]
                self._flush_pending()
                self._report(self.state.rows_done() + sum(o.rows for o in self.open.values()))
            self._close_remaining(last_key)
        except BaseException:
            self._discard_open()
            raise
        self._report(self.state.rows_done(), final=True)
        return True

    def _add(self, key: Any, record: ExportRecord) -> None:
        shard = self.open.get(record.split) or self._open(record.split)
        item = f"{shard.name}#{shard.rows}"
        shard.pending.append(record)
        licence = _licence(record)
        shard.labels[record.label] += 1
        shard.licences[licence] += 1
        shard.attribution.write(common.JSON_TEXT.encode(common.attribution_entry(record, item)) + "\n")
        if shard.rows >= shard.writer.capacity:
            self._close(record.split, key)

    def _open(self, split: str) -> _Open:
        index = self.state.completed(split)
        name = self.shard_names(split)[index]
        count = self.sel.split_counts().get(split, 0)
        capacity = max(0, min(self.state.rows_per_shard, count - index * self.state.rows_per_shard))
        path = self.output / (name + PARTIAL)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = self.sharded.open_shard(path, split, max(capacity, 1))
        handle = attribution_part(self.output, split, index).open("w", encoding="utf-8")
        self.open[split] = _Open(writer=writer, index=index, name=name, attribution=handle)
        return self.open[split]

    def _flush_pending(self) -> None:
        for shard in self.open.values():
            if shard.pending:
                shard.writer.write(shard.pending)
                shard.pending = []

    def _close(self, split: str, last_key: Any) -> None:
        """The shard is complete: close it, give it its final name, record it in the state file."""
        shard = self.open.pop(split)
        if shard.pending:
            shard.writer.write(shard.pending)
        shard.writer.close()
        shard.attribution.close()
        (self.output / (shard.name + PARTIAL)).replace(self.output / shard.name)
        rows = shard.writer.rows
        for label, n in shard.labels.items():
            self.tally.labels.setdefault(split, Counter())[label] += n
        self.tally.licences.update(shard.licences)
        self.tally.written[split] += rows
        done = ShardDone(rows=rows, last_key=last_key, labels=dict(shard.labels), licences=dict(shard.licences))
        self.state.done.setdefault(split, []).append(done)
        self.state.save(self.output)

    def _close_remaining(self, last_key: Any) -> None:
        """End of the scan: close open shards; planned shards left empty (rows deleted since) are written empty."""
        for split in list(self.state.totals):
            while self.state.completed(split) < self.state.totals[split]:
                if split not in self.open:
                    self._open(split)
                self._close(split, last_key)

    def _discard_open(self) -> None:
        for split, shard in list(self.open.items()):
            shard.writer.discard()
            shard.attribution.close()
            with contextlib.suppress(OSError):
                (self.output / (shard.name + PARTIAL)).unlink()
            with contextlib.suppress(OSError):
                attribution_part(self.output, split, shard.index).unlink()
        self.open.clear()


def attribution_part(output: Path, split: str, index: int) -> Path:
    return output / f".attribution-{split}-{index:05d}.jsonl"


def _licence(record: ExportRecord) -> str:
    return str(record.metadata.get("license_spdx") or record.metadata.get("license") or "")


def write_attribution(output: Path, parts: list[Path]) -> Path:
    """``attribution.json`` ({"objects": [...]}) streamed from the per-shard line files, which are removed."""
    path = output / "attribution.json"
    with path.open("w", encoding="utf-8") as out:
        out.write('{"objects": [')
        first = True
        for part in parts:
            with part.open(encoding="utf-8") as lines:
                for line in lines:
                    out.write(("\n" if first else ",\n") + line.rstrip("\n"))
                    first = False
        out.write("\n]}\n")
    for part in parts:
        part.unlink()
    return path
