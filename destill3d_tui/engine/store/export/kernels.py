"""Compiled decoding of the ``.d3d`` compact arrays an export needs (points and normals).

An export decodes every stored snapshot, and the numpy codec (:mod:`..quantize`) spends most
of its time in temporaries: about 0.4 ms for the 2048 points and normals of one snapshot. These
loops do the same arithmetic in the same float64 order in one pass each, so they return the
same float32 values (``tests/dataset/test_sharded_export.py`` compares them with the codec).
They are compiled like the extraction kernels (:func:`..compiled.kernel`, the same disk cache), so
only the first run after an install compiles.
"""

from __future__ import annotations

import math

import numpy as np

from ...compiled import kernel
from .. import quantize as q


@kernel
def _dequantize12(data: np.ndarray, count: int, table: np.ndarray) -> np.ndarray:
    """12-bit little-endian bit stream -> ``count`` float32 values, ``table[raw]`` each.

    Two values are three bytes: read a pair at a time (no per-value bounds checks or shifts by a
    variable amount); the caller checks that ``data`` holds ``count`` values."""
    out = np.empty(count, np.float32)
    for p in range(count // 2):
        b0 = np.uint32(data[3 * p])
        b1 = np.uint32(data[3 * p + 1])
        b2 = np.uint32(data[3 * p + 2])
        out[2 * p] = table[b0 | ((b1 & np.uint32(0xF)) << np.uint32(8))]
        out[2 * p + 1] = table[(b1 >> np.uint32(4)) | (b2 << np.uint32(4))]
    if count % 2:  # the last value starts on a byte (its index is even)
        b = 3 * (count // 2)
        word = np.uint32(data[b])
        if b + 1 < data.shape[0]:
            word |= (np.uint32(data[b + 1]) & np.uint32(0xF)) << np.uint32(8)
        out[count - 1] = table[word]
    return out


@kernel
def _normals12(data: np.ndarray, n: int) -> np.ndarray:
    """12-bit octahedral pairs (three bytes a normal) -> (n, 3) float32 unit normals.

    As ``q.decode_normals``: each coordinate dequantized over [-1, 1] and rounded to float32,
    then unfolded in float64 (q.oct_decode), in one pass with no temporaries. (Reading the
    coordinates from :data:`UNIT12` measured slower here: 18 against 12 us.)"""
    out = np.empty((n, 3), np.float32)
    for i in range(n):
        b0 = np.uint32(data[3 * i])
        b1 = np.uint32(data[3 * i + 1])
        b2 = np.uint32(data[3 * i + 2])
        x = float(np.float32(float(b0 | ((b1 & np.uint32(0xF)) << np.uint32(8))) / 4095.0 * 2.0 + -1.0))
        y = float(np.float32(float((b1 >> np.uint32(4)) | (b2 << np.uint32(4))) / 4095.0 * 2.0 + -1.0))
        z = 1.0 - abs(x) - abs(y)
        t = max(-z, 0.0)
        x = x - (t if x >= 0 else -t)
        y = y - (t if y >= 0 else -t)
        norm = math.sqrt(x * x + y * y + z * z)
        if norm == 0:
            norm = 1.0
        out[i, 0] = np.float32(x / norm)
        out[i, 1] = np.float32(y / norm)
        out[i, 2] = np.float32(z / norm)
    return out


UNIT12 = (np.arange(4096, dtype=np.float64) / 4095 * 2.0 + -1.0).astype(np.float32)
"""Every 12-bit level's value over [-1, 1]: q.dequantize's own arithmetic (``raw / levels * (hi -
lo) + lo`` in float64, then float32), once, so a value costs a table read, not a division."""


def points(data: bytes, n: int) -> np.ndarray:
    """(n, 3) float32 points of a compact snapshot."""
    raw = np.frombuffer(data, np.uint8)
    if q.POINT_BITS != 12 or raw.size * 8 < n * 3 * 12:
        return q.dequantize(data, -1.0, 1.0, q.POINT_BITS, n * 3).reshape(n, 3)
    return _dequantize12(raw, n * 3, UNIT12).reshape(n, 3)


def normals(data: bytes, n: int) -> np.ndarray:
    """(n, 3) float32 unit normals of a compact snapshot."""
    raw = np.frombuffer(data, np.uint8)
    if q.NORMAL_BITS != 12 or raw.size < n * 3:
        return q.decode_normals(data, n)
    return _normals12(raw, n)
