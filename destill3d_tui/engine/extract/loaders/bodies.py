"""Checks that read a text body before a library does: rows against their declared counts,
and real numbers beyond float32 (issue 14.9).

trimesh stores an ASCII PLY whose face row says 4294967295 indices and an OFF face row of 10^9
corners as if they were valid; OpenCASCADE reads the STEP literal ``1.E400`` as some finite
number. Each check streams the file line by line (one pass, no copy of the body) and names the
row or literal that is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ...errors import FormatError, GeometryError

FLOAT32_MAX = float(np.finfo(np.float32).max)
SCAN_CHUNK = 8 << 20
_REAL = {  # real literals with a 2+ digit exponent: the only ones that can leave float32's range
    "STEP": re.compile(rb"[-+]?\d+\.\d*[Ee]\+?\d{2,}"),
    "IGES": re.compile(rb"[-+]?\d*\.?\d+[EeDd]\+?\d{2,}|[-+]?\d+\.[EeDd]\+?\d{2,}"),
    "BREP": re.compile(rb"[-+]?\d*\.?\d+[Ee]\+?\d{2,}"),
}


def _fail(name: str, message: str) -> FormatError:
    return FormatError(f"{name}: {message}", reason="parse_error")


# ---------------------------------------------------------------- reals beyond float32


def check_reals(path: Path, fmt: str) -> None:
    """``non_finite`` when a STEP / IGES / BREP file writes a coordinate beyond float32's range.

    STEP is scanned in CARTESIAN_POINT statements, outside quoted strings; IGES in its
    parameter section only (Hollerith text elsewhere could hold such a token). OpenCASCADE
    reads ``1.E400`` as some finite number and segfaults on an IGES box 9.9e307 long, so this
    runs on the text, before OpenCASCADE.
    """
    pattern = _REAL[fmt]
    with path.open("rb") as fh:
        for offset, chunk in _chunks(fh):
            for match in pattern.finditer(chunk):
                value = float(match.group().replace(b"D", b"E").replace(b"d", b"e"))
                if abs(value) <= FLOAT32_MAX or not _counts(fmt, chunk, match.start()):
                    continue
                raise GeometryError(
                    f"{path.name}: the number {match.group()[:40].decode('ascii')} at byte {offset + match.start()} "
                    f"is beyond float32's range (|x| <= {FLOAT32_MAX:.3g})",
                    reason="non_finite",
                )


def _chunks(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Whole lines, ~SCAN_CHUNK bytes at a time, with their file offsets."""
    offset, carry = 0, b""
    while data := fh.read(SCAN_CHUNK):
        data = carry + data
        cut = data.rfind(b"\n") + 1 or len(data)
        carry = data[cut:]
        yield offset, data[:cut]
        offset += cut
    if carry:
        yield offset, carry


def _counts(fmt: str, chunk: bytes, at: int) -> bool:
    """Is the literal at ``at`` a number of the model (not text inside a string or a comment)?"""
    line_start = chunk.rfind(b"\n", 0, at) + 1
    if fmt == "IGES":
        end = chunk.find(b"\n", at)
        line = chunk[line_start : end if end >= 0 else len(chunk)].rstrip(b"\r")
        return line[72:73] == b"P" and at - line_start < 64
    if fmt == "STEP":  # coordinates only: some writers use huge reals as "unbounded" parameters elsewhere
        statement = max(chunk.rfind(b";", 0, at), 0)
        return chunk.count(b"'", statement, at) % 2 == 0 and b"CARTESIAN_POINT" in chunk[statement:at].upper()
    return True


# ---------------------------------------------------------------- ASCII PLY rows


def check_ply_ascii_rows(path: Path, elements: list[tuple[str, int, list[tuple[str, bool]]]], start: int) -> None:
    """Each element row of an ASCII PLY on its own line, holding what its list counts say.

    ``elements``: (name, count, [(property, is_list)]). A row with a list property must hold
    at least its scalars plus, per list, 1 + the declared count of values.
    """
    with path.open("rb") as fh:
        fh.seek(start)
        lines = (ln for ln in fh if ln.strip())
        for name, count, props in elements:
            lists = [i for i, (_, is_list) in enumerate(props) if is_list]
            for row in range(count):
                line = next(lines, None)
                if line is None:
                    raise _fail(path.name, f"PLY declares {count} {name} rows, the file ends after {row}")
                if lists:
                    _check_list_row(line.split(), props, f"{path.name}: PLY {name} row {row + 1}")


def _check_list_row(tokens: list[bytes], props: list[tuple[str, bool]], where: str) -> None:
    at = 0
    for prop, is_list in props:
        if not is_list:
            at += 1
            continue
        try:
            declared = int(tokens[at])
        except (IndexError, ValueError):
            raise FormatError(f"{where}: no list count for {prop!r}", reason="parse_error") from None
        if declared < 0 or at + 1 + declared > len(tokens):
            raise FormatError(f"{where}: {prop!r} declares {declared} values, the row holds {len(tokens) - at - 1}",
                              reason="parse_error")  # fmt: skip
        at += 1 + declared
    # values after the declared ones are tolerated: some writers (VCGLIB) append extra per-face data


# ---------------------------------------------------------------- OFF face rows


def check_off_rows(path: Path, vertices: int, faces: int, header_lines: int) -> None:
    """After the header, ``vertices`` rows of coordinates, then ``faces`` rows ``n i1 .. in [colour]``.

    A face row must hold at least the ``n`` indices it declares (colour values may follow).
    """
    with path.open("rb") as fh:
        rows = (ln.split(b"#", 1)[0].split() for ln in fh)
        rows = (r for r in rows if r)
        for _ in range(header_lines):
            next(rows, None)
        for row in range(vertices):
            if next(rows, None) is None:
                raise _fail(path.name, f"OFF declares {vertices} vertices, the file ends after {row}")
        for row in range(faces):
            tokens = next(rows, None)
            if tokens is None:
                raise _fail(path.name, f"OFF declares {faces} faces, the file ends after {row}")
            try:
                corners = int(tokens[0])
            except ValueError:
                raise _fail(path.name, f"OFF face row {row + 1} starts with {tokens[0][:20]!r}, not a count") from None
            if corners < 1 or corners > len(tokens) - 1:
                raise _fail(path.name, f"OFF face row {row + 1} declares {corners} corners, holds {len(tokens) - 1}")
