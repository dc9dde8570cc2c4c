"""TFRecord: ``<split>-00000-of-0000N.tfrecord`` shards of ``tf.train.Example`` records, encoded here by hand.

Framing per record (TensorFlow's ``record_writer``): uint64 length, uint32 masked CRC32C of the
length bytes, the data, uint32 masked CRC32C of the data, all little-endian. The payload is the
protobuf wire form of ``Example{features: Features{feature: map<string, Feature>}}`` with
``Feature`` one of ``bytes_list`` (1), ``float_list`` (2, packed) or ``int64_list`` (3, packed).

Features: ``points`` / ``normals`` float (P*3, row-major (P, 3)), ``num_points`` int64, ``label``
int64, ``label_name`` / ``snapshot_id`` / ``metadata`` (JSON) bytes, ``views`` bytes (uint8
(V, H, W)) with ``--views``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

import crc32c
import numpy as np

from .common import ExportLayout, ExportRecord
from .shards import ShardedExporter, ShardWriter

MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """TFRecord's CRC: CRC32C rotated right by 15 bits plus a constant (mod 2**32)."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


# ---------------------------------------------------------------- protobuf wire format


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 -> two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def float_feature(values: np.ndarray) -> bytes:
    packed = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(2, _field(1, packed))  # Feature.float_list { packed value = 1 }


def int64_feature(values: list[int]) -> bytes:
    return _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))


def bytes_feature(values: list[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))


def example(features: dict[str, bytes]) -> bytes:
    """Example bytes from encoded Feature messages, keys sorted (stable output)."""
    entries = b"".join(_field(1, _field(1, k.encode()) + _field(2, v)) for k, v in sorted(features.items()))
    return _field(1, entries)


def record_example(record: ExportRecord) -> bytes:
    features = {
        "points": float_feature(record.points),
        "normals": float_feature(record.normals),
        "num_points": int64_feature([len(record.points)]),
        "label": int64_feature([record.label_index]),
        "label_name": bytes_feature([record.label.encode()]),
        "snapshot_id": bytes_feature([record.snapshot_id.encode()]),
        "metadata": bytes_feature([json.dumps(record.metadata, ensure_ascii=False, default=str).encode()]),
    }
    if record.views is not None:
        features["views"] = bytes_feature([np.ascontiguousarray(record.views, np.uint8).tobytes()])
    return example(features)


class TFRecordShard(ShardWriter):
    """One ``<split>-NNNNN-of-NNNNN.tfrecord`` file."""

    def __init__(self, path: Path, layout: ExportLayout, split: str, capacity: int) -> None:
        super().__init__(path, layout, split, capacity)
        self._handle: BinaryIO = path.open("wb")

    def write(self, records: list[ExportRecord]) -> None:
        views = self.layout.views
        self._handle.write(b"".join(frame(record_example(r if views else _without_views(r))) for r in records))
        self.rows += len(records)

    def close(self) -> None:
        self._handle.close()


def _without_views(record: ExportRecord) -> ExportRecord:
    return ExportRecord(**{**record.__dict__, "views": None})


class TFRecordExporter(ShardedExporter):
    name = "tfrecord"
    description = "TFRecord shards of tf.train.Example (TensorFlow, the tfrecord package)"
    suffix = ".tfrecord"

    def open_shard(self, path: Path, split: str, capacity: int) -> ShardWriter:
        assert self.layout is not None
        return TFRecordShard(path, self.layout, split, capacity)

    def loading_note(self) -> str:
        return (
            "```python\nfrom tfrecord.reader import tfrecord_loader\n"
            "it = tfrecord_loader('train-00000-of-00001.tfrecord', None, {'points': 'float', 'label': 'int'})\n"
            "# TensorFlow: tf.data.TFRecordDataset(tf.io.gfile.glob('train-*.tfrecord'))\n```"
        )
