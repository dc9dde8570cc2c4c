"""Up-axis conversion for classifier input.

Models state the up axis they were trained with (ModelNet: z). Snapshots say which axis their
points use (``processing.up_axis``: "z", "y", "x" or "" when the file format does not say; glTF
is y-up by convention, STL/OBJ vary). Rotations here are proper (det = +1), so shapes are never
mirrored.
"""

from __future__ import annotations

import numpy as np

# rotation taking the named axis onto +z
_TO_Z = {
    "z": np.eye(3, dtype=np.float32),
    "y": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32),  # +90 deg about x: y -> z
    "x": np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=np.float32),  # -90 deg about y: x -> z
}
AXES = ("z", "y", "x")


def rotation(src: str, dst: str = "z") -> np.ndarray:
    """(3, 3) rotation taking points whose up axis is ``src`` to a frame whose up axis is ``dst``."""
    if src not in _TO_Z or dst not in _TO_Z:
        raise ValueError(f"up axis must be one of {AXES}, not {src!r} -> {dst!r}")
    return _TO_Z[dst].T @ _TO_Z[src]


def convert(points: np.ndarray, src: str, dst: str = "z") -> np.ndarray:
    """points (..., N, 3) from up-axis ``src`` to ``dst``."""
    return (points @ rotation(src, dst).T).astype(np.float32)


def describe(src: str, dst: str, guessed: bool) -> str:
    """The line recorded in ``processing.transforms``."""
    how = "guessed (most confident of x/y/z as up)" if guessed else "from the file"
    if src == dst:
        return f"classifier input: up axis {src} ({how}), no rotation"
    return f"classifier input: rotated {src}-up to {dst}-up ({how})"
