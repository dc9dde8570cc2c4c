"""The fast bit unpacker (exports decode every stored snapshot) equals the bit-by-bit one."""

from __future__ import annotations

import numpy as np
import pytest

from destill3d_tui.engine.store import quantize as q


@pytest.mark.parametrize("nbits", [1, 3, 8, 10, 12, 16, 17, 25, 31, 32])
def test_unpack_bits_round_trips_every_width(nbits: int) -> None:
    rng = np.random.default_rng(nbits)
    for count in (0, 1, 7, 2048, 6145):
        values = rng.integers(0, 2**nbits, count, dtype=np.uint64).astype(np.uint32)
        data = q.pack_bits(values, nbits)
        fast = q.unpack_bits(data, nbits, count)
        slow = q._unpack_bits_slow(np.frombuffer(data, np.uint8), nbits, count)
        assert fast.dtype == np.uint32 and np.array_equal(fast, values) and np.array_equal(slow, values)
    with pytest.raises(ValueError, match="too short"):
        q.unpack_bits(b"\x00", nbits, 9)
