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

import contextlib
import functools
import io
import json
import os
import queue
import tarfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .common import JSON_TEXT, ExportLayout, ExportRecord
from .shards import ShardedExporter, ShardWriter

MTIME = 0
"""Members carry a fixed time, so the same export writes the same bytes."""
BLOCK = 512


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
    parts = [(f"{key}.points.npy", npy_bytes(record.points.astype(np.float32, copy=False))),
             (f"{key}.normals.npy", npy_bytes(record.normals.astype(np.float32, copy=False)))]  # fmt: skip
    if record.views is not None:
        parts.append((f"{key}.views.npy", npy_bytes(np.asarray(record.views, np.uint8))))
    parts.append((f"{key}.cls", str(record.label_index).encode()))
    parts.append((f"{key}.json", json.dumps(meta, ensure_ascii=False, default=str).encode()))
    return parts  # the reference layout: WebDatasetShard writes these bytes through members()


class WebDatasetShard(ShardWriter):
    """One ``.tar`` shard, written by a thread of its own.

    The export's thread lays each batch out as a list of buffers (tar headers from a per-suffix
    template, the ``.npy`` header of the shape, the decoded arrays themselves, padding) and queues
    it; the writer thread hands the list to ``os.writev`` (no join, no ``tobytes`` copy), which
    releases the GIL, so the file write of one batch overlaps the read and decode of the next.
    The queue holds one batch, so memory stays at about three batches of arrays. The bytes are
    those of :func:`sample` and :func:`header` (a test compares them).
    """

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        super().__init__(path, layout, split, capacity)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, 0o666)  # closed in close()
        self._batches: queue.Queue[list | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="webdataset-shard", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (buffers := self._batches.get()) is not None:
            if self._error is None:
                try:
                    write_all(self._fd, buffers)
                except BaseException as exc:  # handed to the export's thread at its next write or close
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, records: list[ExportRecord]) -> None:
        self._raise()
        buffers: list[Any] = []
        for record in records:
            members(record, buffers)
        self._batches.put(buffers)
        self.rows += len(records)

    def close(self) -> None:
        if self._thread.is_alive():
            self._batches.put(None)
            self._thread.join()
        if self._fd >= 0:
            try:
                if self._error is None:
                    write_all(self._fd, [b"\0" * (2 * BLOCK)])  # the end-of-archive marker: two empty blocks
            finally:
                os.close(self._fd)
                self._fd = -1
        self._raise()

    def discard(self) -> None:
        self._error = self._error or RuntimeError("discarded")  # the thread skips what is still queued
        with contextlib.suppress(Exception):
            self.close()


def write_all(fd: int, buffers: list[Any]) -> None:
    """Every buffer to ``fd`` in order: ``os.writev`` in runs of at most IOV_MAX, finishing short writes."""
    for start in range(0, len(buffers), IOV_MAX):
        run = [memoryview(b).cast("B") for b in buffers[start : start + IOV_MAX]]
        left = sum(len(b) for b in run)
        while left:
            written = _writev(fd, run)
            left -= written
            while run and written >= len(run[0]):  # drop what went out, keep the rest of a part
                written -= len(run[0])
                run.pop(0)
            if run and written:
                run[0] = run[0][written:]


def _write_one(fd: int, buffers: list[memoryview]) -> int:
    """``os.writev`` where there is none (Windows): the first buffer that is not empty, one call."""
    for buffer in buffers:
        if len(buffer):
            return os.write(fd, buffer)
    return 0


_writev = getattr(os, "writev", None) or _write_one
IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024)
_ZEROS = bytes(BLOCK)


def members(record: ExportRecord, out: list[Any]) -> None:
    """Append the buffers of one object's tar members to ``out`` (the bytes of :func:`sample`)."""
    key = record.snapshot_id
    if record.views is not None or not key.isascii() or len(key) > 100 - len(".normals.npy"):
        for name, data in sample(record):  # the general path: views, or a key ustar cannot hold
            out += (header(name, len(data)), data, _ZEROS[: -len(data) % BLOCK])
        return
    raw = key.encode()
    keysum = sum(raw)
    for suffix, array in ((b".points.npy", record.points), (b".normals.npy", record.normals)):
        array = np.ascontiguousarray(array, np.float32)
        head = _npy_header(array.dtype.str, array.shape)
        size = len(head) + array.nbytes
        out += (_fast_header(raw, keysum, suffix, size), head, array, _ZEROS[: -size % BLOCK])
    meta = {"snapshot_id": key, "label": record.label, "label_id": record.label_index, "split": record.split,
            **record.metadata}  # fmt: skip
    for suffix, data in ((b".cls", str(record.label_index).encode()),
                         (b".json", JSON_TEXT.encode(meta).encode())):  # fmt: skip
        out += (_fast_header(raw, keysum, suffix, len(data)), data, _ZEROS[: -len(data) % BLOCK])


def _fast_header(raw: bytes, keysum: int, suffix: bytes, size: int) -> bytes:
    before, base, after = _template(suffix, size)
    return (raw + suffix).ljust(100, b"\0") + before + b"%06o\0 " % (base + keysum) + after


@functools.lru_cache(maxsize=4096)
def _template(suffix: bytes, size: int) -> tuple[bytes, int, bytes]:
    """:func:`header` of ``<key><suffix>`` less the key: bytes 100-148, the checksum less the key's bytes,
    bytes 156-512."""
    block = _ustar(suffix, size)
    return block[100:148], sum(block), block[156:]


def _ustar(raw: bytes, size: int) -> bytes:
    """The ustar block of a regular file, its checksum field as spaces (as the checksum is summed)."""
    fields = [raw.ljust(100, b"\0"), b"0000644\0", b"0000000\0", b"0000000\0", b"%011o\0" % size,
              b"%011o\0" % MTIME, b" " * 8, b"0", b"\0" * 100, b"ustar\x0000", b"\0" * 32, b"\0" * 32,
              b"0000000\0", b"0000000\0", b"\0" * 155]  # fmt: skip
    return b"".join(fields).ljust(BLOCK, b"\0")


def header(name: str, size: int) -> bytes:
    """A POSIX ustar header for a regular file (tarfile's own costs ten times more per member).

    Names longer than ustar's 100 bytes, or not ASCII, get tarfile's pax header instead.
    """
    raw = name.encode("ascii", "replace")
    if len(raw) > 100 or not name.isascii():
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, MTIME, 0o644
        return info.tobuf(tarfile.PAX_FORMAT)
    block = _ustar(raw, size)
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


class WebDatasetExporter(ShardedExporter):
    name = "webdataset"
    description = "WebDataset .tar shards (per-object .npy/.json members; PyTorch streaming loaders)"
    suffix = ".tar"
    in_flight = 2  # each shard has its writer thread: two share a split's rows

    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter:
        assert self.layout is not None
        return WebDatasetShard(path, self.layout, split, capacity)

    def loading_note(self) -> str:
        return (
            "```python\nimport webdataset as wds\n"
            "ds = wds.WebDataset('train-{00000..00003}-of-00004.tar').decode()  # the names are in index.json\n"
            "for sample in ds:\n    points, label = sample['points.npy'], int(sample['cls'])\n```"
        )
