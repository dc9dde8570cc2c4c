"""Point-cloud formats: PCD (ascii / binary / binary_compressed), XYZ, PTS, LAS / LAZ / COPC.

Headers are checked against the bytes actually present before any array is allocated, because
Open3D believes lying headers (a PCD that says a million points and holds two reads as a
million) and a declared count near 2^32 would otherwise allocate gigabytes.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from ...errors import FormatError
from ..types import LoadedGeometry

MAX_POINTS = 20_000_000  # declared points; larger clouds are refused, smaller ones subsampled later
PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
             ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}  # fmt: skip


def load_points(path: Path, fmt: str) -> LoadedGeometry:
    """Read a point cloud: vertices (n, 3) float64, faces None, point_normals (n, 3) when present."""
    loader = {"PCD": _load_pcd, "XYZ": _load_text, "PTS": _load_text, "LAS": _load_las, "LAZ": _load_las}[fmt]
    geometry = loader(path)
    geometry.format = fmt
    return geometry


def too_many(name: str, count: int, what: str = "points") -> FormatError:
    return FormatError(f"{name}: declares {count} {what}, over the cap of {MAX_POINTS}", reason="too_large")


# ---------------------------------------------------------------- PCD


def _pcd_header(data: bytes, name: str) -> tuple[dict[str, list[str]], int]:
    """Header fields and the byte offset where the data starts."""
    header: dict[str, list[str]] = {}
    pos = 0
    while pos < len(data) and "DATA" not in header:
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end].decode("ascii", "replace").strip()
        pos = end + 1
        if line and not line.startswith("#"):
            key, *values = line.split()
            header[key.upper()] = values
        if pos > 65536:
            break
    if "DATA" not in header or "FIELDS" not in header:
        raise FormatError(f"{name}: PCD header without FIELDS/DATA", reason="parse_error")
    return header, pos


def _pcd_layout(header: dict[str, list[str]], name: str) -> tuple[np.dtype, int]:
    fields = header["FIELDS"]
    sizes = header.get("SIZE", ["4"] * len(fields))
    types = header.get("TYPE", ["F"] * len(fields))
    counts = header.get("COUNT", ["1"] * len(fields))
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise FormatError(f"{name}: PCD FIELDS/SIZE/TYPE/COUNT lengths differ", reason="parse_error")
    parts = []
    try:
        for i, (field, size, typ, count) in enumerate(zip(fields, sizes, types, counts, strict=True)):
            code = PCD_TYPES[(typ.upper(), int(size))]
            parts.append(
                (f"{field}_{i}" if field == "_" else field, "<" + code, (int(count),) if int(count) > 1 else ())
            )
        dtype = np.dtype(parts)
        points = int(header.get("POINTS", [0])[0]) or int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise FormatError(f"{name}: PCD header invalid ({exc})", reason="parse_error") from exc
    if not {"x", "y", "z"} <= set(dtype.names or ()):
        raise FormatError(f"{name}: PCD has no x/y/z fields", reason="parse_error")
    if points < 0:
        raise FormatError(f"{name}: negative PCD point count", reason="parse_error")
    if points > MAX_POINTS:
        raise too_many(name, points)
    return dtype, points


def _load_pcd(path: Path) -> LoadedGeometry:
    data = path.read_bytes()
    header, start = _pcd_header(data, path.name)
    dtype, points = _pcd_layout(header, path.name)
    kind = header["DATA"][0].lower() if header["DATA"] else ""
    if kind == "ascii":
        table = _pcd_ascii(data[start:], dtype, points, path.name)
    elif kind == "binary":
        need = points * dtype.itemsize
        if len(data) - start < need:
            raise FormatError(
                f"{path.name}: PCD binary data holds {len(data) - start} of {need} bytes", reason="parse_error"
            )
        table = np.frombuffer(data, dtype=dtype, count=points, offset=start)
    elif kind == "binary_compressed":
        table = _pcd_compressed(data[start:], dtype, points, path.name)
    else:
        raise FormatError(f"{path.name}: unknown PCD DATA kind {kind!r}", reason="parse_error")
    xyz = np.stack([table[c].astype(np.float64) for c in ("x", "y", "z")], axis=1)
    normals = None
    if {"normal_x", "normal_y", "normal_z"} <= set(dtype.names):
        normals = np.stack([table[c].astype(np.float64) for c in ("normal_x", "normal_y", "normal_z")], axis=1)
    return LoadedGeometry(vertices=xyz, faces=None, format="PCD", point_normals=normals,
                          metadata={"pcd_data": kind, "pcd_points": points})  # fmt: skip


def _pcd_ascii(body: bytes, dtype: np.dtype, points: int, name: str) -> np.ndarray:
    columns = sum(int(np.prod(dtype[n].shape or (1,))) for n in dtype.names)
    rows = [ln.split() for ln in body.splitlines() if ln.strip()]
    if len(rows) < points:
        raise FormatError(f"{name}: PCD declares {points} points, holds {len(rows)}", reason="parse_error")
    try:
        values = np.array([[float(v) for v in r[:columns]] for r in rows[:points]], dtype=np.float64)
    except ValueError as exc:
        raise FormatError(f"{name}: PCD ascii row is not numeric ({exc})", reason="parse_error") from exc
    if values.ndim != 2 or values.shape[1] != columns:
        raise FormatError(f"{name}: PCD ascii rows do not have {columns} columns", reason="parse_error")
    table = np.zeros(points, dtype=[(n, "f8") for n in dtype.names if not dtype[n].shape])
    col = 0
    for n in dtype.names:
        width = int(np.prod(dtype[n].shape or (1,)))
        if not dtype[n].shape:
            table[n] = values[:, col]
        col += width
    return table


def _pcd_compressed(body: bytes, dtype: np.dtype, points: int, name: str) -> np.ndarray:
    """LZF-compressed, field-by-field (structure of arrays) layout."""
    if len(body) < 8:
        raise FormatError(f"{name}: PCD binary_compressed data truncated", reason="parse_error")
    compressed, raw = struct.unpack("<II", body[:8])
    if raw != points * dtype.itemsize:
        if raw > MAX_POINTS * dtype.itemsize:
            raise FormatError(f"{name}: PCD claims {raw} uncompressed bytes", reason="too_large")
        raise FormatError(f"{name}: PCD uncompressed size {raw} != {points} x {dtype.itemsize}", reason="parse_error")
    if compressed > len(body) - 8:
        raise FormatError(f"{name}: PCD compressed block larger than the file", reason="parse_error")
    flat = lzf_decompress(body[8 : 8 + compressed], raw, name)
    table = np.zeros(points, dtype=dtype)
    offset = 0
    for n in dtype.names:
        size = dtype[n].itemsize * points
        table[n] = np.frombuffer(flat, dtype=dtype[n], count=points, offset=offset)
        offset += size
    return table


def lzf_decompress(src: bytes, size: int, name: str = "data") -> bytes:
    """Plain LZF (liblzf) decoder; refuses to write past ``size`` bytes."""
    out = bytearray(size)
    ip = op = 0
    n = len(src)
    try:
        while ip < n:
            ctrl = src[ip]
            ip += 1
            if ctrl < 32:  # literal run of ctrl + 1 bytes
                length = ctrl + 1
                if op + length > size or ip + length > n:
                    raise ValueError("literal past the end")
                out[op : op + length] = src[ip : ip + length]
                ip += length
                op += length
                continue
            length = ctrl >> 5
            if length == 7:
                length += src[ip]
                ip += 1
            ref = op - ((ctrl & 0x1F) << 8) - src[ip] - 1
            ip += 1
            length += 2
            if ref < 0 or op + length > size:
                raise ValueError("back reference out of range")
            if ref + length <= op:
                out[op : op + length] = out[ref : ref + length]
            else:  # overlapping copy repeats the pattern byte by byte
                for k in range(length):
                    out[op + k] = out[ref + k]
            op += length
    except (IndexError, ValueError) as exc:
        raise FormatError(f"{name}: corrupt LZF data in PCD ({exc})", reason="parse_error") from exc
    if op != size:
        raise FormatError(f"{name}: LZF data gives {op} of {size} bytes", reason="parse_error")
    return bytes(out)


# ---------------------------------------------------------------- XYZ / PTS

_SPLIT = re.compile(rb"[\s,;]+")


def _load_text(path: Path) -> LoadedGeometry:
    """Whitespace/comma separated rows, x y z first; bad rows are skipped with a warning.

    A PTS file may start with its point count; when it does, that many rows are read.
    """
    rows, bad, declared = [], 0, None
    with path.open("rb") as fh:
        for i, raw in enumerate(fh):
            if i > MAX_POINTS:
                raise too_many(path.name, i, "rows")
            line = raw.strip()
            if not line or line.startswith((b"#", b"//")):
                continue
            fields = _SPLIT.split(line)
            if i == 0 and len(fields) == 1 and fields[0].isdigit():
                declared = int(fields[0])
                continue
            try:
                rows.append((float(fields[0]), float(fields[1]), float(fields[2])))
            except (ValueError, IndexError):
                bad += 1
    return _text_geometry(path, rows, bad, declared)


def _text_geometry(
    path: Path, rows: list[tuple[float, float, float]], bad: int, declared: int | None
) -> LoadedGeometry:
    warnings = [f"skipped {bad} rows that are not x y z numbers"] if bad else []
    if bad and not rows:
        raise FormatError(f"{path.name}: no row holds three numbers", reason="parse_error")
    if declared is not None:
        if declared > len(rows):
            raise FormatError(f"{path.name}: declares {declared} points, holds {len(rows)}", reason="parse_error")
        if declared < len(rows):
            warnings.append(f"read the {declared} declared points, ignored {len(rows) - declared} more rows")
            rows = rows[:declared]
    points = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return LoadedGeometry(vertices=points, faces=None, format="XYZ", warnings=warnings)


# ---------------------------------------------------------------- LAS / LAZ


def _load_las(path: Path) -> LoadedGeometry:
    import laspy

    try:
        with laspy.open(str(path)) as reader:
            header = reader.header
            count = int(header.point_count)
            if count > MAX_POINTS:
                raise too_many(path.name, count)
            _check_las_extent(path, header, count)
            records = reader.read_points(count)
    except FormatError:
        raise
    except Exception as exc:  # laspy raises LaspyException, ValueError, struct.error ...
        raise FormatError(f"{path.name}: cannot read LAS/LAZ: {type(exc).__name__}: {exc}"[:500],
                          reason="parse_error") from exc  # fmt: skip
    xyz = np.stack([np.asarray(records.x), np.asarray(records.y), np.asarray(records.z)], axis=1).astype(np.float64)
    if len(xyz) != count:
        raise FormatError(f"{path.name}: LAS declares {count} points, holds {len(xyz)}", reason="parse_error")
    meta = {"las_version": f"{header.version.major}.{header.version.minor}",
            "point_format": int(header.point_format.id), "compressed": bool(header.are_points_compressed)}  # fmt: skip
    return LoadedGeometry(vertices=xyz, faces=None, format="LAS", metadata=meta)


def _check_las_extent(path: Path, header, count: int) -> None:
    """Uncompressed LAS: the point records must fit in the file."""
    size = path.stat().st_size
    if header.offset_to_point_data > size:
        raise FormatError(f"{path.name}: point data offset beyond the end of the file", reason="parse_error")
    if not header.are_points_compressed:
        need = header.offset_to_point_data + count * header.point_format.size
        if need > size:
            raise FormatError(f"{path.name}: LAS declares {count} points, the file is too short", reason="parse_error")
