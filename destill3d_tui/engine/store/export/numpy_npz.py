"""NumPy: ``<split>-00000-of-0000N.npz`` shards (``points``, ``normals``, ``labels``, ``label_names``,
``snapshot_ids``, ``metadata`` as JSON strings, ``views`` with ``--views``; listed in
``index.json``), or the same arrays returned in memory (``return_arrays=True``, spec 10.1).

A shard is held in memory until it is saved (``np.savez`` writes whole arrays), so NumPy shards
are smaller than the other formats' (``shard_bytes``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .common import ExportLayout, ExportRecord
from .shards import ShardedExporter, ShardWriter


def _arrays(layout: ExportLayout, n: int) -> dict[str, Any]:
    p = layout.points_per_object
    arrays: dict[str, Any] = {
        "points": np.zeros((n, p, 3), np.float32),
        "normals": np.zeros((n, p, 3), np.float32),
        "labels": np.zeros(n, np.int64),
        "label_names": np.array(layout.label_names, dtype=str),
        "snapshot_ids": np.empty(n, dtype=object),
        "metadata": np.empty(n, dtype=object),
    }
    if layout.views and layout.view_shape:
        arrays["views"] = np.zeros((n, *layout.view_shape), np.uint8)
    return arrays


def _put(a: dict[str, Any], i: int, record: ExportRecord) -> None:
    a["points"][i] = record.points
    a["normals"][i] = record.normals
    a["labels"][i] = record.label_index
    a["snapshot_ids"][i] = record.snapshot_id
    a["metadata"][i] = json.dumps(record.metadata, ensure_ascii=False, default=str)
    if "views" in a and record.views is not None:
        a["views"][i] = record.views


def _text_columns(a: dict[str, Any], n: int) -> dict[str, Any]:
    """The first ``n`` rows, object columns as fixed-width unicode (``np.load`` needs no ``allow_pickle``)."""
    out = {k: (v if k == "label_names" else v[:n]) for k, v in a.items()}
    for key in ("snapshot_ids", "metadata"):
        out[key] = out[key].astype(str) if n else np.zeros(0, dtype="<U1")
    return out


class NumpyShard(ShardWriter):
    """One ``.npz`` shard, filled in memory and saved at close."""

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        super().__init__(path, layout, split, capacity)
        self._arrays = _arrays(layout, capacity)

    def write(self, records: list[ExportRecord]) -> None:
        for record in records:
            _put(self._arrays, self.rows, record)
            self.rows += 1

    def close(self) -> None:
        with self.path.open("wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(handle, **_text_columns(self._arrays, self.rows))
        self._arrays = {}

    def discard(self) -> None:
        self._arrays = {}


class NumpyExporter(ShardedExporter):
    name = "numpy"
    description = "NumPy .npz shards per split"
    suffix = ".npz"
    shard_bytes = 200_000_000
    """A shard is built in memory: 200 MB keeps an export's peak well under 1 GB."""

    def __init__(self, *, in_memory: bool = False) -> None:
        super().__init__()
        self.in_memory = in_memory
        self.sharded = not in_memory  # type: ignore[misc]
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    def begin(self, layout: ExportLayout) -> None:
        self.layout = layout
        if not self.in_memory:
            super().begin(layout)
        else:  # return_arrays: the whole selection, record by record
            self.arrays = {split: _arrays(layout, n) for split, n in layout.split_counts.items()}
            self._cursor = dict.fromkeys(layout.split_counts, 0)

    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter:
        assert self.layout is not None
        return NumpyShard(path, self.layout, split, capacity)

    def write(self, record: ExportRecord) -> str:
        i = self._cursor[record.split]
        _put(self.arrays[record.split], i, record)
        self._cursor[record.split] = i + 1
        return f"{record.split}#{i}"

    def finish(self) -> list[Path]:
        self.arrays = {s: _text_columns(a, self._cursor[s]) for s, a in self.arrays.items()}
        return []

    def loading_note(self) -> str:
        return ("```python\nimport numpy as np\nd = np.load('train-00000-of-00001.npz')\n"
                "points, labels = d['points'], d['labels']\n```")
