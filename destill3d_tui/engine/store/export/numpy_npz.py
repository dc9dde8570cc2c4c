"""NumPy: one ``<split>.npz`` per split (``points``, ``normals``, ``labels``, ``label_names``,
``snapshot_ids``, ``metadata`` as JSON strings, ``views`` with ``--views``), or the same arrays
returned in memory (``return_arrays=True``, spec 10.1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .common import Exporter, ExportLayout, ExportRecord


class NumpyExporter(Exporter):
    name = "numpy"
    description = "NumPy .npz per split"

    def __init__(self, *, in_memory: bool = False) -> None:
        super().__init__()
        self.in_memory = in_memory
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    def begin(self, layout: ExportLayout) -> None:
        if not self.in_memory:
            super().begin(layout)
        self.layout = layout
        p = layout.points_per_object
        self._cursor = dict.fromkeys(layout.split_counts, 0)
        for split, n in layout.split_counts.items():
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
            self.arrays[split] = arrays

    def write(self, record: ExportRecord) -> str:
        a = self.arrays[record.split]
        i = self._cursor[record.split]
        a["points"][i] = record.points
        a["normals"][i] = record.normals
        a["labels"][i] = record.label_index
        a["snapshot_ids"][i] = record.snapshot_id
        a["metadata"][i] = json.dumps(record.metadata, ensure_ascii=False, default=str)
        if "views" in a and record.views is not None:
            a["views"][i] = record.views
        self._cursor[record.split] = i + 1
        return f"{record.split}.npz#{i}"

    def _finalise(self) -> None:
        """Object columns -> fixed-width unicode, so ``np.load`` needs no ``allow_pickle``."""
        for a in self.arrays.values():
            for key in ("snapshot_ids", "metadata"):
                a[key] = a[key].astype(str) if len(a[key]) else np.zeros(0, dtype="<U1")

    def finish(self) -> list[Path]:
        self._finalise()
        if self.in_memory:
            return []
        assert self.layout is not None
        paths = []
        for split, arrays in self.arrays.items():
            path = self.layout.output / f"{split}.npz"
            np.savez(path, **arrays)
            paths.append(path)
        return paths

    def loading_note(self) -> str:
        return "```python\nimport numpy as np\nd = np.load('train.npz')\npoints, labels = d['points'], d['labels']\n```"
