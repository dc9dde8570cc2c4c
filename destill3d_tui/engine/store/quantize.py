"""Compact array codecs for the ``.d3d`` format: fixed-point bit packing and octahedral normals.

Bounds guaranteed by the ``compact`` precision (tests check them):

- points on the unit sphere: 12 bits per coordinate over [-1, 1] -> error <= 2.5e-4 (< 1e-3)
- normals: octahedral, 12 bits per component -> angular error < 0.1 degree (< 0.5)
- curvature in [0, 1/3] (PCA surface variation): 10 bits -> error <= 1.7e-4
- density in [0, 1]: 8 bits
"""

from __future__ import annotations

import numpy as np

POINT_BITS = 12
NORMAL_BITS = 12
CURVATURE_BITS = 10
DENSITY_BITS = 8
CURVATURE_MAX = 1.0 / 3.0


def pack_bits(values: np.ndarray, nbits: int) -> bytes:
    """Pack non-negative integers ``values`` (< 2**nbits) into a little-endian bit stream."""
    flat = np.ascontiguousarray(values, dtype=np.uint32).ravel()
    bits = ((flat[:, None] >> np.arange(nbits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


def unpack_bits(data: bytes, nbits: int, count: int) -> np.ndarray:
    """The ``count`` values :func:`pack_bits` wrote, as uint32."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size * 8 < count * nbits:
        raise ValueError(f"bit stream too short: need {count * nbits} bits, have {raw.size * 8}")
    group = _whole_byte_group(nbits)
    if group:
        return _unpack_groups(raw, nbits, count, group)
    if nbits > 25:
        return _unpack_bits_slow(raw, nbits, count)
    # each value lies within the 4 bytes starting at its first bit's byte: gather them as one
    # little-endian word and shift (about 50x faster than expanding every bit; exports decode
    # millions of snapshots)
    offsets = np.arange(count, dtype=np.int64) * nbits
    first = offsets >> 3
    padded = np.concatenate([raw, np.zeros(4, np.uint8)])
    word = padded[first].astype(np.uint32)
    for k in (1, 2, 3):
        word |= padded[first + k].astype(np.uint32) << np.uint32(8 * k)
    return (word >> (offsets & 7).astype(np.uint32)) & np.uint32((1 << nbits) - 1)


def _whole_byte_group(nbits: int) -> int:
    """The fewest values whose bits fill whole bytes within one 64-bit word (12 bits: 2 values in 3 bytes), or 0."""
    for k in (1, 2, 4, 8):
        if (k * nbits) % 8 == 0 and k * nbits <= 64:
            return k
    return 0


def _unpack_groups(raw: np.ndarray, nbits: int, count: int, k: int) -> np.ndarray:
    """Values packed ``k`` to a run of whole bytes: one word per run, then ``k`` shifts."""
    width = k * nbits // 8
    runs = -(-count // k)
    block = np.zeros((runs, width), np.uint8)
    take = min(raw.size, runs * width)
    block.reshape(-1)[:take] = raw[:take]
    wide = np.uint64 if width > 4 else np.uint32
    word = block[:, 0].astype(wide)
    for j in range(1, width):
        word |= block[:, j].astype(wide) << wide(8 * j)
    values = np.empty((runs, k), np.uint32)
    mask = wide((1 << nbits) - 1)
    for i in range(k):  # one scalar shift per position: a broadcast uint64 shift is 10x slower
        values[:, i] = (word >> wide(i * nbits)) & mask
    return values.reshape(-1)[:count]


def _unpack_bits_slow(raw: np.ndarray, nbits: int, count: int) -> np.ndarray:
    bits = np.unpackbits(raw, bitorder="little")[: count * nbits]
    weights = (1 << np.arange(nbits, dtype=np.uint32)).astype(np.uint32)
    return (bits.reshape(count, nbits).astype(np.uint32) * weights).sum(axis=1).astype(np.uint32)


def quantize(values: np.ndarray, lo: float, hi: float, nbits: int) -> bytes:
    levels = (1 << nbits) - 1
    scaled = (np.clip(values, lo, hi) - lo) / (hi - lo) * levels
    return pack_bits(np.rint(scaled).astype(np.uint32), nbits)


def dequantize(data: bytes, lo: float, hi: float, nbits: int, count: int) -> np.ndarray:
    levels = (1 << nbits) - 1
    raw = unpack_bits(data, nbits, count).astype(np.float64)
    return (raw / levels * (hi - lo) + lo).astype(np.float32)


def oct_encode(normals: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) -> octahedral coordinates (n, 2) in [-1, 1]."""
    n = np.asarray(normals, dtype=np.float64)
    norm = np.abs(n).sum(axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    p = n / norm
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    sx = np.where(x >= 0, 1.0, -1.0)
    sy = np.where(y >= 0, 1.0, -1.0)
    ox = np.where(z >= 0, x, (1 - np.abs(y)) * sx)
    oy = np.where(z >= 0, y, (1 - np.abs(x)) * sy)
    return np.stack([ox, oy], axis=1)


def oct_decode(oct_xy: np.ndarray) -> np.ndarray:
    x = oct_xy[:, 0].astype(np.float64)
    y = oct_xy[:, 1].astype(np.float64)
    z = 1.0 - np.abs(x) - np.abs(y)
    t = np.clip(-z, 0.0, None)
    x = x - np.where(x >= 0, t, -t)
    y = y - np.where(y >= 0, t, -t)
    v = np.stack([x, y, z], axis=1)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    return (v / norm).astype(np.float32)


def encode_normals(normals: np.ndarray) -> bytes:
    return quantize(oct_encode(normals), -1.0, 1.0, NORMAL_BITS)


def decode_normals(data: bytes, count: int) -> np.ndarray:
    return oct_decode(dequantize(data, -1.0, 1.0, NORMAL_BITS, count * 2).reshape(count, 2))
