"""HDF5: one file per split in the spec's layout plus the ModelNet40 h5 loaders' datasets.

Each ``ply_data_<split>0.h5`` holds

- spec 8.3: ``/points`` (N, P, 3) float32, ``/normals`` (N, P, 3) float32, ``/labels`` (N,) int32,
  ``/label_names`` (C,) str, ``/snapshot_ids`` (N,) str, ``/metadata`` (N,) JSON str,
  ``/views`` (N, V, H, W) uint8 with ``--views``;
- what the DGCNN and PointNet ModelNet40 loaders read: ``/data`` (hard link to ``/points``),
  ``/normal`` (hard link to ``/normals``) and ``/label`` (N, 1) uint8 (int64 above 255 classes).

The file names and ``<split>_files.txt`` / ``shape_names.txt`` follow ``modelnet40_ply_hdf5_2048``
so those loaders' globs (``ply_data_train*.h5``) find the files as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from .common import Exporter, ExportLayout, ExportRecord

STR = h5py.string_dtype(encoding="utf-8")
WRITE_BLOCK = 64
"""Records buffered per split before one slab write (64 x 2048 x 3 float32 = 1.5 MB per array)."""


class HDF5Exporter(Exporter):
    name = "hdf5"
    description = "HDF5, one file per split (spec layout + ModelNet40 h5 data/label)"

    def begin(self, layout: ExportLayout) -> None:
        super().begin(layout)
        self._files: dict[str, h5py.File] = {}
        self._cursor: dict[str, int] = {}
        self._pending: dict[str, list[ExportRecord]] = {}
        for split, count in layout.split_counts.items():
            self._files[split] = self._create(layout, split, count)
            self._cursor[split] = 0

    def _create(self, layout: ExportLayout, split: str, n: int) -> h5py.File:
        p = layout.points_per_object
        f = h5py.File(layout.output / f"ply_data_{split}0.h5", "w")
        chunk = (max(1, min(n, WRITE_BLOCK)), p, 3)
        f.create_dataset("points", (n, p, 3), np.float32, chunks=chunk if n else None)
        f.create_dataset("normals", (n, p, 3), np.float32, chunks=chunk if n else None)
        f.create_dataset("labels", (n,), np.int32)
        f.create_dataset("label", (n, 1), np.uint8 if len(layout.label_names) <= 256 else np.int64)
        f.create_dataset("snapshot_ids", (n,), STR)
        f.create_dataset("metadata", (n,), STR)
        f.create_dataset("label_names", data=np.array(layout.label_names, dtype=object), dtype=STR)
        f["data"] = f["points"]  # hard links: the same bytes under the loaders' names
        f["normal"] = f["normals"]
        if layout.views and layout.view_shape:
            f.create_dataset("views", (n, *layout.view_shape), np.uint8)
        f.attrs["split"] = split
        f.attrs["generator"] = "Destill3D"
        return f

    def write(self, record: ExportRecord) -> str:
        pending = self._pending.setdefault(record.split, [])
        pending.append(record)
        row = self._cursor[record.split] + len(pending) - 1
        if len(pending) >= WRITE_BLOCK:
            self._flush(record.split)
        return f"ply_data_{record.split}0.h5#{row}"

    def _flush(self, split: str) -> None:
        """Write the buffered records as one slab per dataset (row-by-row writes re-touch whole chunks)."""
        records = self._pending.pop(split, [])
        if not records:
            return
        f = self._files[split]
        start = self._cursor[split]
        end = start + len(records)
        labels = np.array([r.label_index for r in records])
        f["points"][start:end] = np.stack([r.points for r in records])
        f["normals"][start:end] = np.stack([r.normals for r in records])
        f["labels"][start:end] = labels
        f["label"][start:end, 0] = labels
        f["snapshot_ids"][start:end] = np.array([r.snapshot_id for r in records], dtype=object)
        meta = [json.dumps(r.metadata, ensure_ascii=False, default=str) for r in records]
        f["metadata"][start:end] = np.array(meta, dtype=object)
        if "views" in f:
            shape = f["views"].shape[1:]
            f["views"][start:end] = np.stack([r.views if r.views is not None else np.zeros(shape, np.uint8)
                                              for r in records])  # fmt: skip
        self._cursor[split] = end

    def finish(self) -> list[Path]:
        assert self.layout is not None
        paths = []
        for split, f in self._files.items():
            self._flush(split)
            paths.append(Path(f.filename))
            f.close()
            (self.layout.output / f"{split}_files.txt").write_text(f"ply_data_{split}0.h5\n")
        (self.layout.output / "shape_names.txt").write_text("".join(n + "\n" for n in self.layout.label_names))
        return paths

    def abort(self) -> None:
        for f in getattr(self, "_files", {}).values():
            if f.id.valid:
                f.close()

    def loading_note(self) -> str:
        return (
            "```python\nimport h5py\nwith h5py.File('ply_data_train0.h5') as f:\n"
            "    points, labels = f['points'][:], f['labels'][:]   # or f['data'], f['label'] (ModelNet40 h5)\n"
            "    names = [n.decode() for n in f['label_names'][:]]\n```"
        )
