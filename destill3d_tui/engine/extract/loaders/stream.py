"""Point clouds of any size: rows read in chunks into a bounded, seeded uniform sample.

A loader hands its rows over chunk by chunk (text blocks parsed by numpy, binary records from
``np.fromfile``, LAS chunks from laspy); :class:`Reservoir` keeps a uniform sample of at most
:data:`RESERVOIR_POINTS` of them, so a 20M-point cloud needs the memory of a 1M-point one.
A cloud that fits is kept whole and in file order, exactly as a whole-file read gives it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import FormatError

RESERVOIR_POINTS = 1_000_000  # 5x the largest candidate pool the sampler ever uses (MAX_FPS_CANDIDATES)
TEXT_CHUNK_BYTES = 8 << 20  # one text block: ~200K rows, parsed by numpy in one call
RECORD_CHUNK = 1 << 20  # binary records per read
COMPACT_AT = 1.25  # the reservoir holds at most this many times its capacity between compactions
_SEPARATORS = bytes.maketrans(b",;", b"  ")  # XYZ/PTS writers use spaces, tabs, commas or semicolons


class Reservoir:
    """A seeded uniform sample without replacement of at most ``capacity`` rows of a stream.

    Every finite row gets a random key drawn in stream order from ``default_rng(seed)``; the
    rows with the ``capacity`` smallest keys are kept (so the result does not depend on how
    the stream was cut into chunks). Rows with a NaN/inf coordinate are dropped and counted.
    """

    def __init__(self, capacity: int = RESERVOIR_POINTS, seed: int = 0) -> None:
        self.capacity = int(capacity)
        self.seen = 0  # finite rows offered
        self.non_finite = 0  # rows dropped for a NaN/inf coordinate
        self._rng = np.random.default_rng(seed)
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (keys, order, rows)
        self._held = 0
        self._threshold = np.inf  # once full, a key at or above this can never be kept

    def add(self, rows: np.ndarray) -> None:
        """Offer ``rows`` (n, w) float64, whose first three columns are x, y, z."""
        rows = np.asarray(rows, dtype=np.float64)
        if not len(rows):
            return
        finite = np.isfinite(rows[:, :3]).all(axis=1)
        if not finite.all():
            self.non_finite += int((~finite).sum())
            rows = rows[finite]
        keys = self._rng.random(len(rows))
        order = np.arange(self.seen, self.seen + len(rows), dtype=np.int64)
        self.seen += len(rows)
        if self._threshold < np.inf:
            keep = keys < self._threshold
            keys, order, rows = keys[keep], order[keep], rows[keep]
        self._parts.append((keys, order, rows))
        self._held += len(rows)
        if self._held > COMPACT_AT * self.capacity:  # once full, few rows pass the threshold: compactions are rare
            self._compact()

    def _compact(self) -> None:
        keys, order, rows = (np.concatenate(parts) for parts in zip(*self._parts, strict=True))
        if len(keys) > self.capacity:
            chosen = np.argpartition(keys, self.capacity - 1)[: self.capacity]
            keys, order, rows = keys[chosen], order[chosen], rows[chosen]
            self._threshold = float(keys.max())
        self._parts = [(keys, order, rows)]
        self._held = len(keys)

    def rows(self, width: int) -> np.ndarray:
        """The kept rows (k, width) float64, in file order."""
        if not self._parts:
            return np.zeros((0, width), dtype=np.float64)
        self._compact()
        _, order, rows = self._parts[0]
        return rows[np.argsort(order, kind="stable")] if self.seen > self.capacity else rows

    def notes(self) -> tuple[list[str], list[str]]:
        """(transforms, warnings) that say what the sample kept and dropped."""
        kept = min(self.seen, self.capacity)
        transforms = [f"reservoir_sample {self.seen} -> {kept}"] if self.seen > kept else []
        dropped = [f"dropped {self.non_finite} non-finite points"] if self.non_finite else []
        return transforms, dropped


def text_blocks(fh: BinaryIO, size: int = TEXT_CHUNK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines from ``fh`` (the last may lack its newline).

    Raises ``FormatError`` for a line longer than a block: no point row is, and holding it
    would hold the whole file.
    """
    carry = b""
    while True:
        data = fh.read(size)
        if not data:
            if carry:
                yield carry
            return
        data = carry + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) > size:
                name = Path(getattr(fh, "name", "file")).name
                raise FormatError(f"{name}: a line longer than {size} bytes; not rows of numbers", reason="parse_error")
            carry = data
            continue
        carry = data[cut:]
        yield data[:cut]


def numeric_lines(block: bytes) -> list[bytes]:
    """The lines of a text block that may hold numbers: separators made spaces, comment lines gone.

    Blank lines stay: the numpy parser skips them.
    """
    if b"," in block or b";" in block:
        block = block.translate(_SEPARATORS)
    lines = block.split(b"\n")
    if b"#" in block or b"//" in block:
        lines = [ln for ln in lines if not ln.lstrip().startswith((b"#", b"//"))]
    return lines


def parse_columns(lines: list[bytes], columns: tuple[int, ...]) -> np.ndarray | None:
    """``columns`` of every line as (n, len(columns)) float64 in one numpy call; None when any line fails."""
    if not lines:
        return np.zeros((0, len(columns)), dtype=np.float64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about an input without data; that is no error here
            return np.loadtxt(lines, dtype=np.float64, usecols=columns, ndmin=2, comments=None)
    except ValueError:
        return None


def parse_rows_slowly(lines: list[bytes], columns: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Line by line, skipping lines that do not hold numbers in ``columns``: (rows, count skipped)."""
    rows: list[list[float]] = []
    bad = 0
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        try:
            rows.append([float(fields[c]) for c in columns])
        except (ValueError, IndexError):
            bad += 1
    return np.array(rows, dtype=np.float64).reshape(-1, len(columns)), bad


def record_chunks(fh: BinaryIO, dtype: np.dtype, count: int, chunk: int = RECORD_CHUNK) -> Iterator[np.ndarray]:
    """``count`` binary records of ``dtype`` from ``fh``'s position, ``chunk`` at a time (fewer if the file ends)."""
    left = count
    while left > 0:
        records = np.fromfile(fh, dtype=dtype, count=min(chunk, left))
        if not len(records):
            return
        left -= len(records)
        yield records
