"""Parquet: ``data/<split>-00000-of-0000N.parquet`` shards (the layout the Hugging Face Hub and
``datasets.load_dataset`` read as splits), one row per object, at most 500 MB a file.

``points`` / ``normals`` are ``fixed_size_list<fixed_size_list<float32, 3>, P>`` (P = points per
object), so pyarrow gives (P, 3) per row and the Hugging Face ``datasets`` Parquet loader maps
them to fixed-length sequences; provenance is in plain columns beside them, and the whole
metadata map as a JSON string column. The README's YAML header names the split files for the Hub.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .common import JSON_TEXT, ExportLayout, ExportRecord
from .shards import ShardedExporter, ShardWriter

ROWS_PER_GROUP = 250
"""Rows per row group: about 12 MB of clouds (a few row groups are in flight at once: built, queued, written)."""
COMPRESSION = "none"
"""Measured on 1,000 objects of 2048 points: snappy over float32 clouds saved 7% of the bytes and
cost 12% more write time, so shards are stored uncompressed (exports are throughput-bound)."""

WRITE_BATCH = 262_144
"""Values the Parquet writer levels and encodes per step (pyarrow's default: 1,024). The clouds'
nested lists cost a repetition level per float; in larger steps that costs 150 instead of 200 us
per row of 2 x 2048 x 3 floats (measured on 2,000 rows; 1M-value steps were no faster). Only
where pages start changes: readers get the same rows."""
TEXT_COLUMNS = ("model_id", "platform", "title", "author", "source_url", "license", "license_spdx", "sha256",
                "best_guess")  # best_guess: beside an `unknown` label, the model's top real label


def cloud_type(points: int) -> pa.DataType:
    """(P, 3) float32 with no nulls at any level: no definition levels to write or read (reads 3x faster)."""
    return pa.list_(pa.field("element", pa.list_(pa.field("element", pa.float32(), nullable=False), 3),
                             nullable=False), points)  # fmt: skip


def schema(points: int, views: bool) -> pa.Schema:
    cloud = cloud_type(points)
    fields = [
        pa.field("snapshot_id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("label_id", pa.int64(), nullable=False),
        pa.field("points", cloud, nullable=False),
        pa.field("normals", cloud, nullable=False),
        *[pa.field(name, pa.string()) for name in TEXT_COLUMNS],
        pa.field("confidence", pa.float64()),
        pa.field("metadata", pa.string()),
    ]
    if views:
        fields.append(pa.field("views", pa.binary()))  # uint8 (V, H, W) C-order; shape in metadata
    return pa.schema(fields)


def _clouds(arrays: list[np.ndarray], points: int, buffers: Buffers | None = None) -> pa.Array:
    size = sum(a.size for a in arrays)
    out = buffers.take(size) if buffers is not None else np.empty(size, np.float32)
    flat = pa.array(np.concatenate([a.reshape(-1) for a in arrays], out=out, casting="same_kind"))
    outer = cloud_type(points)
    return pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, type=outer.value_type),
                                             type=outer)  # fmt: skip


class Buffers:
    """Float32 buffers for the cloud columns, reused once the writer thread has written their row group.

    A fresh 12 MB array per column per row group costs its page faults each time; the writer
    hands a buffer back after ``write_table`` (pyarrow keeps no reference to the table), and
    ``take`` allocates when none is free, so the export's thread never waits for one."""

    def __init__(self, keep: int) -> None:
        self._free: queue.Queue[np.ndarray] = queue.Queue(maxsize=keep)
        self.lent: list[np.ndarray] = []  # taken since the last table was queued

    def take(self, size: int) -> np.ndarray:
        buffer = None
        with contextlib.suppress(queue.Empty):
            buffer = self._free.get_nowait()
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, np.float32)
        self.lent.append(buffer)
        return buffer[:size]

    def give(self, arrays: list[np.ndarray]) -> None:
        for array in arrays:
            with contextlib.suppress(queue.Full):
                self._free.put_nowait(array)


def table(records: list[ExportRecord], layout: ExportLayout, schema_: pa.Schema,
          buffers: Buffers | None = None) -> pa.Table:  # fmt: skip
    """Records -> one Arrow table (columns built whole: no per-row Arrow objects)."""
    p = layout.points_per_object
    columns: dict[str, Any] = {
        "snapshot_id": pa.array([r.snapshot_id for r in records], pa.string()),
        "label": pa.array([r.label for r in records], pa.string()),
        "label_id": pa.array([r.label_index for r in records], pa.int64()),
        "points": _clouds([r.points for r in records], p, buffers),
        "normals": _clouds([r.normals for r in records], p, buffers),
    }
    for name in TEXT_COLUMNS:
        columns[name] = pa.array([str(r.metadata.get(name) or "") for r in records], pa.string())
    columns["confidence"] = pa.array([r.metadata.get("confidence") for r in records], pa.float64())
    columns["metadata"] = pa.array([JSON_TEXT.encode(r.metadata) for r in records], pa.string())
    if layout.views:
        columns["views"] = pa.array([None if r.views is None else r.views.tobytes() for r in records], pa.binary())
    return pa.table(columns, schema=schema_)


class ParquetShard(ShardWriter):
    """One ``data/<split>-NNNNN-of-NNNNN.parquet`` file; each write is one row group.

    Row groups are encoded by a thread of their own: pyarrow's writer releases the GIL, so the
    next batch is read and decoded while the last one is written. The queue holds one table, so
    memory stays at about three row groups.
    """

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        super().__init__(path, layout, split, capacity)
        self._schema = schema(layout.points_per_object, layout.views)
        scalars = [f.name for f in self._schema if f.name not in ("points", "normals", "views")]
        # dictionaries and min/max statistics pay for the text and number columns, not for clouds
        self._writer = pq.ParquetWriter(path, self._schema, compression=COMPRESSION, use_dictionary=scalars,
                                        write_statistics=scalars, write_batch_size=WRITE_BATCH)  # fmt: skip
        self._tables: queue.Queue[tuple[pa.Table, list[np.ndarray]] | None] = queue.Queue(maxsize=1)
        self._buffers = Buffers(keep=6)  # two columns of the tables being written, queued and built
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="parquet-shard", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._tables.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(item[0])
                except BaseException as exc:  # handed to the export's thread at its next write or close
                    self._error = exc
                else:
                    self._buffers.give(item[1])
            item = None  # the table's last reference, before its buffers are filled again

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, records: list[ExportRecord]) -> None:
        for start in range(0, len(records), ROWS_PER_GROUP):
            self._raise()
            built = table(records[start : start + ROWS_PER_GROUP], self.layout, self._schema, self._buffers)
            lent, self._buffers.lent = self._buffers.lent, []
            self._tables.put((built, lent))
        self.rows += len(records)

    def close(self) -> None:
        if self._thread.is_alive():
            self._tables.put(None)
            self._thread.join()
        self._writer.close()
        self._raise()

    def discard(self) -> None:
        self._error = self._error or RuntimeError("discarded")  # the thread skips what is still queued
        with contextlib.suppress(Exception):
            self.close()


class ParquetExporter(ShardedExporter):
    name = "parquet"
    description = "Parquet shards in data/ (pyarrow, Hugging Face datasets)"
    suffix = ".parquet"
    in_flight = 2  # each shard has its writer thread: two share a split's rows

    def shard_name(self, split: str, index: int, total: int) -> str:
        return f"data/{split}-{index:05d}-of-{total:05d}.parquet"

    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter:
        assert self.layout is not None
        return ParquetShard(path, self.layout, split, capacity)

    def loading_note(self) -> str:
        return (
            "```python\nimport datasets\nds = datasets.load_dataset('parquet', data_dir='data')  "
            "# or: load_dataset('<this folder>')\n"
            "# or: pyarrow.parquet.read_table('data/train-00000-of-00001.parquet')\n```"
        )
