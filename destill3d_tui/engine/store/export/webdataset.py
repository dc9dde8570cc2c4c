"""WebDataset: ``<split>-00000-of-0000N.tar`` shards, one group of members per object.

Each object is a run of tar members sharing its key (the snapshot id), the layout the
``webdataset`` package and other PyTorch streaming loaders read::

    <key>.points.npy     (P, 3) float32
    <key>.normals.npy    (P, 3) float32
    <key>.views.npy      (V, H, W) uint8, with ``--views``
    <key>.cls            the label index as text
    <key>.json           label, snapshot id and provenance (the metadata the other formats carry)

Members of one object are written together and in this order, so a loader streaming a shard
sees whole samples.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from .common import ExportLayout, ExportRecord
from .shards import ShardedExporter, ShardWriter

MTIME = 0
"""Members carry a fixed time, so the same export writes the same bytes."""


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def sample(record: ExportRecord) -> list[tuple[str, bytes]]:
    """(member name, bytes) of one object."""
    key = record.snapshot_id
    meta = {"snapshot_id": key, "label": record.label, "label_id": record.label_index, "split": record.split,
            **record.metadata}  # fmt: skip
    members = [(f"{key}.points.npy", npy_bytes(record.points.astype(np.float32, copy=False))),
               (f"{key}.normals.npy", npy_bytes(record.normals.astype(np.float32, copy=False)))]  # fmt: skip
    if record.views is not None:
        members.append((f"{key}.views.npy", npy_bytes(np.asarray(record.views, np.uint8))))
    members.append((f"{key}.cls", str(record.label_index).encode()))
    members.append((f"{key}.json", json.dumps(meta, ensure_ascii=False, default=str).encode()))
    return members


class WebDatasetShard(ShardWriter):
    """One ``.tar`` shard."""

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        super().__init__(path, layout, split, capacity)
        self._tar = tarfile.open(path, "w")  # noqa: SIM115 - open for the shard's life, closed in close()

    def write(self, records: list[ExportRecord]) -> None:
        for record in records:
            for name, data in sample(record):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), MTIME, 0o644
                self._tar.addfile(info, io.BytesIO(data))
        self.rows += len(records)

    def close(self) -> None:
        self._tar.close()


class WebDatasetExporter(ShardedExporter):
    name = "webdataset"
    description = "WebDataset .tar shards (per-object .npy/.json members; PyTorch streaming loaders)"
    suffix = ".tar"

    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter:
        assert self.layout is not None
        return WebDatasetShard(path, self.layout, split, capacity)

    def loading_note(self) -> str:
        return (
            "```python\nimport webdataset as wds\n"
            "ds = wds.WebDataset('train-{00000..00003}-of-00004.tar').decode()  # the names are in index.json\n"
            "for sample in ds:\n    points, label = sample['points.npy'], int(sample['cls'])\n```"
        )
