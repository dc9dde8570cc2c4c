"""HDF5: shards per split in the spec's layout plus the ModelNet40 h5 loaders' datasets.

Each ``ply_data_<split><i>.h5`` (i = 0, 1, ...; listed in ``<split>_files.txt`` and
``index.json``) holds

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

from .common import ExportLayout, ExportRecord
from .shards import ShardedExporter, ShardWriter

STR = h5py.string_dtype(encoding="utf-8")
WRITE_BLOCK = 64
"""Records buffered per split before one slab write (64 x 2048 x 3 float32 = 1.5 MB per array)."""


class HDF5Shard(ShardWriter):
    """One ``ply_data_<split><i>.h5``: datasets sized to the shard's capacity, cut to its rows at close."""

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        super().__init__(path, layout, split, capacity)
        self.file = _create(path, layout, split, capacity)

    def write(self, records: list[ExportRecord]) -> None:
        """One slab per dataset (row-by-row writes re-touch whole chunks)."""
        f, start = self.file, self.rows
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
        self.rows = end

    def close(self) -> None:
        if not self.file.id.valid:
            return
        if self.rows < self.capacity:  # rows deleted since the plan: the shard ends where its data does
            for name in RESIZABLE:
                if name in self.file:
                    self.file[name].resize(self.rows, axis=0)
        self.file.close()


RESIZABLE = ("points", "normals", "labels", "label", "snapshot_ids", "metadata", "views")


def _create(path: Path, layout: ExportLayout, split: str, n: int) -> h5py.File:
    p = layout.points_per_object
    f = h5py.File(path, "w")
    chunk = max(1, min(n, WRITE_BLOCK))

    def dataset(name: str, shape: tuple[int, ...], dtype: object) -> None:
        f.create_dataset(name, (n, *shape), dtype, maxshape=(None, *shape), chunks=(chunk, *shape))

    dataset("points", (p, 3), np.float32)
    dataset("normals", (p, 3), np.float32)
    dataset("labels", (), np.int32)
    dataset("label", (1,), np.uint8 if len(layout.label_names) <= 256 else np.int64)
    dataset("snapshot_ids", (), STR)
    dataset("metadata", (), STR)
    f.create_dataset("label_names", data=np.array(layout.label_names, dtype=object), dtype=STR)
    f["data"] = f["points"]  # hard links: the same bytes under the loaders' names
    f["normal"] = f["normals"]
    if layout.views and layout.view_shape:
        dataset("views", tuple(layout.view_shape), np.uint8)
    f.attrs["split"] = split
    f.attrs["generator"] = "Destill3D"
    return f


class HDF5Exporter(ShardedExporter):
    name = "hdf5"
    description = "HDF5 shards per split (spec layout + ModelNet40 h5 data/label)"
    suffix = ".h5"

    def shard_name(self, split: str, index: int, total: int) -> str:
        return f"ply_data_{split}{index}.h5"

    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter:
        assert self.layout is not None
        return HDF5Shard(path, self.layout, split, capacity)

    def write_indexes(self, shards: dict[str, list[str]], rows: dict[str, list[int]]) -> list[Path]:
        """``index.json``, ``<split>_files.txt`` (the loaders' list of a split's files), ``shape_names.txt``."""
        assert self.layout is not None
        out = self.layout.output
        paths = super().write_indexes(shards, rows)
        for split, names in shards.items():
            (out / f"{split}_files.txt").write_text("".join(n + "\n" for n in names))
            paths.append(out / f"{split}_files.txt")
        (out / "shape_names.txt").write_text("".join(n + "\n" for n in self.layout.label_names))
        return [*paths, out / "shape_names.txt"]

    def loading_note(self) -> str:
        return (
            "```python\nimport h5py\nfor name in open('train_files.txt').read().split():\n"
            "    with h5py.File(name) as f:\n"
            "        points, labels = f['points'][:], f['labels'][:]   # or f['data'], f['label'] (ModelNet40 h5)\n"
            "        names = [n.decode() for n in f['label_names'][:]]\n```"
        )
