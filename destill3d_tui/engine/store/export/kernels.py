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
def _dequantize12(data: np.ndarray, count: int, lo: float, hi: float) -> np.ndarray:
    """12-bit little-endian bit stream -> ``count`` float32 values over [lo, hi] (as q.dequantize)."""
    out = np.empty(count, np.float32)
    size = data.shape[0]
    for j in range(count):
        bit = j * 12
        byte = bit >> 3
        word = np.uint32(data[byte])
        if byte + 1 < size:
            word |= np.uint32(data[byte + 1]) << np.uint32(8)
        if byte + 2 < size:
            word |= np.uint32(data[byte + 2]) << np.uint32(16)
        raw = (word >> np.uint32(bit & 7)) & np.uint32(0xFFF)
        out[j] = np.float32(float(raw) / 4095.0 * (hi - lo) + lo)
    return out


@kernel
def _oct_decode(flat: np.ndarray, n: int) -> np.ndarray:
    """(2n,) float32 octahedral coordinates -> (n, 3) float32 unit normals (as q.oct_decode)."""
    out = np.empty((n, 3), np.float32)
    for i in range(n):
        x = float(flat[2 * i])
        y = float(flat[2 * i + 1])
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


def points(data: bytes, n: int) -> np.ndarray:
    """(n, 3) float32 points of a compact snapshot."""
    raw = np.frombuffer(data, np.uint8)
    if q.POINT_BITS != 12 or raw.size * 8 < n * 3 * 12:
        return q.dequantize(data, -1.0, 1.0, q.POINT_BITS, n * 3).reshape(n, 3)
    return _dequantize12(raw, n * 3, -1.0, 1.0).reshape(n, 3)


def normals(data: bytes, n: int) -> np.ndarray:
    """(n, 3) float32 unit normals of a compact snapshot."""
    raw = np.frombuffer(data, np.uint8)
    if q.NORMAL_BITS != 12 or raw.size * 8 < n * 2 * 12:
        return q.decode_normals(data, n)
    return _oct_decode(_dequantize12(raw, n * 2, -1.0, 1.0), n)
