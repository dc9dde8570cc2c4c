"""Parquet: ``<split>.parquet``, one row per object.

``points`` / ``normals`` are ``fixed_size_list<fixed_size_list<float32, 3>, P>`` (P = points per
object), so pyarrow gives (P, 3) per row and the Hugging Face ``datasets`` Parquet loader maps
them to fixed-length sequences; provenance is in plain columns beside them, and the whole
metadata map as a JSON string column. The README's YAML header names the split files for the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .common import Exporter, ExportLayout, ExportRecord

ROWS_PER_GROUP = 256
"""Rows buffered per row group: about 12 MB of points, small enough to stream, big enough to scan."""

TEXT_COLUMNS = ("model_id", "platform", "title", "author", "source_url", "license", "license_spdx", "sha256")


def schema(points: int, views: bool) -> pa.Schema:
    cloud = pa.list_(pa.list_(pa.float32(), 3), points)
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


def _clouds(arrays: list[np.ndarray], points: int) -> pa.Array:
    flat = pa.array(np.concatenate([a.reshape(-1) for a in arrays]).astype(np.float32, copy=False))
    return pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, 3), points)


class ParquetExporter(Exporter):
    name = "parquet"
    description = "Parquet, one row per object (pyarrow, Hugging Face datasets)"

    def begin(self, layout: ExportLayout) -> None:
        super().begin(layout)
        self._schema = schema(layout.points_per_object, layout.views)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows: dict[str, list[ExportRecord]] = {}
        self._count: dict[str, int] = dict.fromkeys(layout.split_counts, 0)
        for split in layout.split_counts:
            self._writers[split] = pq.ParquetWriter(layout.output / f"{split}.parquet", self._schema)
            self._rows[split] = []

    def write(self, record: ExportRecord) -> str:
        rows = self._rows[record.split]
        rows.append(record)
        row = self._count[record.split]
        self._count[record.split] = row + 1
        if len(rows) >= ROWS_PER_GROUP:
            self._flush(record.split)
        return f"{record.split}.parquet#{row}"

    def _flush(self, split: str) -> None:
        rows = self._rows[split]
        if not rows:
            return
        assert self.layout is not None
        p = self.layout.points_per_object
        columns: dict[str, Any] = {
            "snapshot_id": pa.array([r.snapshot_id for r in rows]),
            "label": pa.array([r.label for r in rows]),
            "label_id": pa.array([r.label_index for r in rows], pa.int64()),
            "points": _clouds([r.points for r in rows], p),
            "normals": _clouds([r.normals for r in rows], p),
        }
        for name in TEXT_COLUMNS:
            columns[name] = pa.array([str(r.metadata.get(name) or "") for r in rows], pa.string())
        columns["confidence"] = pa.array([r.metadata.get("confidence") for r in rows], pa.float64())
        columns["metadata"] = pa.array([json.dumps(r.metadata, ensure_ascii=False, default=str) for r in rows])
        if self.layout.views:
            columns["views"] = pa.array([None if r.views is None else r.views.tobytes() for r in rows], pa.binary())
        self._writers[split].write_table(pa.table(columns, schema=self._schema))
        rows.clear()

    def finish(self) -> list[Path]:
        paths = []
        for split, writer in self._writers.items():
            self._flush(split)
            writer.close()
            paths.append(self._path(split))
        return paths

    def _path(self, split: str) -> Path:
        assert self.layout is not None
        return self.layout.output / f"{split}.parquet"

    def abort(self) -> None:
        for writer in getattr(self, "_writers", {}).values():
            writer.close()

    def loading_note(self) -> str:
        return (
            "```python\nimport pyarrow.parquet as pq\nt = pq.read_table('train.parquet')\n"
            "# or: datasets.load_dataset('parquet', data_files={'train': 'train.parquet'})\n```"
        )
