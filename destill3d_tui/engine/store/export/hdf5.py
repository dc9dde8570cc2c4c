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


class HDF5Exporter(Exporter):
    name = "hdf5"
    description = "HDF5, one file per split (spec layout + ModelNet40 h5 data/label)"

    def begin(self, layout: ExportLayout) -> None:
        super().begin(layout)
        self._files: dict[str, h5py.File] = {}
        self._cursor: dict[str, int] = {}
        for split, count in layout.split_counts.items():
            self._files[split] = self._create(layout, split, count)
            self._cursor[split] = 0

    def _create(self, layout: ExportLayout, split: str, n: int) -> h5py.File:
        p = layout.points_per_object
        f = h5py.File(layout.output / f"ply_data_{split}0.h5", "w")
        chunk = (max(1, min(n, 64)), p, 3)
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
        f = self._files[record.split]
        i = self._cursor[record.split]
        f["points"][i] = record.points
        f["normals"][i] = record.normals
        f["labels"][i] = record.label_index
        f["label"][i, 0] = record.label_index
        f["snapshot_ids"][i] = record.snapshot_id
        f["metadata"][i] = json.dumps(record.metadata, ensure_ascii=False, default=str)
        if "views" in f and record.views is not None:
            f["views"][i] = record.views
        self._cursor[record.split] = i + 1
        return f"ply_data_{record.split}0.h5#{i}"

    def finish(self) -> list[Path]:
        assert self.layout is not None
        paths = []
        for split, f in self._files.items():
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
