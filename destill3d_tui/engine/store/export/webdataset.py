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

import functools
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
    """The ``.npy`` file of an array (what ``np.save`` writes), its header made once per shape."""
    array = np.ascontiguousarray(array)
    return _npy_header(array.dtype.str, array.shape) + array.tobytes()


@functools.lru_cache(maxsize=32)
def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
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
        self._handle = path.open("wb")  # open for the shard's life, closed in close()

    def write(self, records: list[ExportRecord]) -> None:
        chunks: list[bytes] = []
        for record in records:
            for name, data in sample(record):
                chunks += [header(name, len(data)), data, b"\0" * (-len(data) % BLOCK)]
        self._handle.write(b"".join(chunks))
        self.rows += len(records)

    def close(self) -> None:
        self._handle.write(b"\0" * (2 * BLOCK))  # the end-of-archive marker: two empty blocks
        self._handle.close()


BLOCK = 512


def header(name: str, size: int) -> bytes:
    """A POSIX ustar header for a regular file (tarfile's own costs ten times more per member).

    Names longer than ustar's 100 bytes, or not ASCII, get tarfile's pax header instead.
    """
    raw = name.encode("ascii", "replace")
    if len(raw) > 100 or not name.isascii():
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, MTIME, 0o644
        return info.tobuf(tarfile.PAX_FORMAT)
    fields = [raw.ljust(100, b"\0"), b"0000644\0", b"0000000\0", b"0000000\0", b"%011o\0" % size,
              b"%011o\0" % MTIME, b" " * 8, b"0", b"\0" * 100, b"ustar\x0000", b"\0" * 32, b"\0" * 32,
              b"0000000\0", b"0000000\0", b"\0" * 155]  # fmt: skip
    block = b"".join(fields).ljust(BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


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
