"""The write scan of an export: snapshots in key order, in batches, decoded and handed to the
writer of their shard; completed shards are recorded so an interrupted export resumes.

Sharded formats (:class:`ShardedRun`): before the first write, a key-only pass (:mod:`.ranges`)
fixes each shard's key range, shard ``i`` of a split being the ``i``-th block of
``rows_per_shard`` of that split's selected records in key order, and the state file keeps them.
A format whose shards have writer threads of their own (Parquet, WebDataset: ``in_flight = 2``)
then writes two shards of each split at once, so two threads share the largest split's rows; each
open shard reads its own keys (key-only pages of its range, kept to its split) and its blobs by
key, so every record is read once and each shard is written in key order. One thread does all
the reading and decoding (its Python work holds the interpreter lock, so a second reader would
not run beside it) and hands the next batch to the open shard whose writer has the most rows
left, counting its share of its split's shards not yet opened: the writers of all splits finish
together, where served in turn the last train shard was written alone. A shard completes when
its range is read; a kill can leave any set of shards complete, and the resumed export writes
exactly the missing ones from their recorded ranges. Formats without shards (ModelNet folders,
in-memory arrays) read one keyset scan, record by record (:meth:`StreamExport.run_records`).

Memory is bounded by one batch of blobs plus what the open shards buffer (a few row groups per
Parquet shard, an HDF5 slab, or a NumPy shard), never by the collection: the selection is compact
arrays (:mod:`.selection`), the ranges one pair of keys per shard, attribution lines go to a file
per shard as they are written, and the card is tallied from per-shard counts.

Decoding stays in this process: with the compiled decode (:mod:`.kernels`) and the geometry
read alone, a snapshot costs about 0.1 ms to read and decode (bench/scale.py prints both),
comparable to what shipping its 48 KB of arrays back from a worker process would cost. With two
shards of a split written at once, the export's thread and the writers keep both cores of the
2-core development machine busy (30,000 snapshots to Parquet in 5.1 s: 4.2 CPU-s here, 4.6 in
the writers), so a worker process would have no idle core to run on.
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
from . import common, kernels, ranges
from .common import ExportLayout, ExportRecord
from .selection import Selection, keyset, rows_by_key
from .shards import PARTIAL, ExportState, ShardDone, ShardedExporter, ShardWriter

if TYPE_CHECKING:
    from ..db import Store

BLOB_BATCH = 250
"""Snapshots per read of the write scan (about 6 MB of blobs, 12 MB decoded): a Parquet row group, so
each open shard's writer is handed one row group at a time and the export's thread never waits long
on one writer while another idles (30,000 to Parquet, in-process at load 1.0-1.4: 5,700-5,900/s;
in batches of 1,000: 4,400-5,100)."""
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
    """An open shard: its writer, its keys still to read, its attribution lines, what it holds."""

    writer: ShardWriter
    split: str
    index: int
    name: str
    attribution: Any  # text file
    keys: ranges.ShardKeys
    capacity: int
    last_key: Any = None
    labels: Counter[str] = field(default_factory=Counter)
    licences: Counter[str] = field(default_factory=Counter)


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
    """The write scan of a sharded format, resumable from ``state`` (see the module docstring)."""

    def __init__(self, *args: Any, state: ExportState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = state
        self.sharded: ShardedExporter = self.exporter  # type: ignore[assignment]
        self.open: list[_Open] = []
        self._waiting: dict[str, list[int]] = {}  # split -> missing shards not opened yet, ascending
        self._counts = self.sel.split_counts()
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

    def run(self) -> bool:
        """Writes every missing shard; False when cancelled (completed shards stay recorded)."""
        self.sharded.begin(self.layout)
        try:
            self._plan()
            self._waiting = {s: self.state.missing(s) for s in self.state.totals}
            while self._open_next():
                if self._cancelled():
                    self._discard_open()
                    self.interrupted = True
                    return False
                self._step(max(self.open, key=self._work_left))
                self._report(self.state.rows_done() + sum(o.writer.rows for o in self.open))
        except BaseException:
            self._discard_open()
            raise
        self._report(self.state.rows_done(), final=True)
        return True

    def _plan(self) -> None:
        """Key ranges for the missing shards that have none (a new export, or a state file of the earlier layout)."""
        starts = {}
        for split in self.state.totals:
            missing = self.state.missing(split)
            if any(self.state.key_range(split, i) is None for i in missing):
                starts[split] = (missing[0], self.state.done_through(split))
        if not starts:
            return
        planned = ranges.plan(self.store, self.sel, self.where, self.params, starts, self.state.rows_per_shard,
                              self.state.totals)  # fmt: skip
        for split, by_index in planned.items():
            known = self.state.ranges.get(split) or []
            self.state.ranges[split] = [by_index.get(i, known[i] if i < len(known) else None)
                                        for i in range(self.state.totals[split])]  # fmt: skip
        self.state.save(self.output)

    def _open_next(self) -> bool:
        """Opens the next missing shards of each split, up to the format's ``in_flight``; False: none left."""
        for split, waiting in self._waiting.items():
            while waiting and sum(o.split == split for o in self.open) < self.sharded.in_flight:
                self.open.append(self._open(split, waiting.pop(0)))
        return bool(self.open)

    def _work_left(self, shard: _Open) -> int:
        """Rows its writer has still to write: its own, and its share of its split's shards not yet opened.

        The next batch goes to the shard with the most, so the writers of all splits finish together
        (served in turn, the last shard of the largest split would be written alone at the end)."""
        lanes = sum(o.split == shard.split for o in self.open)
        later = sum(self._capacity(shard.split, i) for i in self._waiting[shard.split])
        return shard.capacity - shard.writer.rows + later // lanes

    def _capacity(self, split: str, index: int) -> int:
        """Records planned for shard ``index`` of ``split`` (fewer where some were deleted or are damaged)."""
        count = self._counts.get(split, 0)
        return max(0, min(self.state.rows_per_shard, count - index * self.state.rows_per_shard))

    def _open(self, split: str, index: int) -> _Open:
        name = self.shard_names(split)[index]
        capacity = self._capacity(split, index)
        key_range = self.state.key_range(split, index)
        assert key_range is not None  # planned before any shard opens
        keys = ranges.ShardKeys(self.store, self.sel, self.where, self.params, split, key_range)
        path = self.output / (name + PARTIAL)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = self.sharded.open_shard(path, split, max(capacity, 1))
        handle = attribution_part(self.output, split, index).open("w", encoding="utf-8")
        return _Open(writer=writer, split=split, index=index, name=name, attribution=handle, keys=keys,
                     capacity=capacity)  # fmt: skip

    def _step(self, shard: _Open) -> None:
        """The shard's next batch: read by key, decoded, handed to its writer; closed after its last."""
        keys = shard.keys.take(self.batch)
        if keys:
            rows = rows_by_key(self.store, _ROW_SELECT, self.where, self.params, keys)
            records = [record for _, record in self._records(rows)]
            for offset, record in enumerate(records):
                self._add(shard, record, f"{shard.name}#{shard.writer.rows + offset}")
            if records:
                shard.writer.write(records)
            shard.last_key = keys[-1]
        if shard.keys.exhausted():
            self._close(shard)

    @staticmethod
    def _add(shard: _Open, record: ExportRecord, item: str) -> None:
        licence = _licence(record)
        shard.labels[record.label] += 1
        shard.licences[licence] += 1
        shard.attribution.write(common.JSON_TEXT.encode(common.attribution_entry(record, item)) + "\n")

    def _close(self, shard: _Open) -> None:
        """The shard is complete: close it, give it its final name, record it in the state file."""
        shard.writer.close()  # may raise a writer thread's error: the shard is still open, and discarded
        shard.attribution.close()
        (self.output / (shard.name + PARTIAL)).replace(self.output / shard.name)
        self.open.remove(shard)
        rows, split = shard.writer.rows, shard.split
        for label, n in shard.labels.items():
            self.tally.labels.setdefault(split, Counter())[label] += n
        self.tally.licences.update(shard.licences)
        self.tally.written[split] += rows
        self.state.record(split, ShardDone(rows=rows, last_key=shard.last_key, labels=dict(shard.labels),
                                           licences=dict(shard.licences), index=shard.index))  # fmt: skip
        self.state.save(self.output)

    def _discard_open(self) -> None:
        for shard in self.open:
            shard.writer.discard()
            shard.attribution.close()
            with contextlib.suppress(OSError):
                (self.output / (shard.name + PARTIAL)).unlink()
            with contextlib.suppress(OSError):
                attribution_part(self.output, shard.split, shard.index).unlink()
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
