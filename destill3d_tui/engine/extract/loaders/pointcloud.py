"""Point-cloud formats: PCD (ascii / binary / binary_compressed), XYZ, PTS, LAS / LAZ / COPC and
PLY files without faces.

Every reader streams: rows go chunk by chunk into a seeded :class:`~.stream.Reservoir`, so a
cloud of any size is read within a bounded memory, and ``metadata["load_transforms"]`` says
what the sample kept ("reservoir_sample 20000000 -> 1000000"). Headers are checked against the
bytes actually present before anything is read, because Open3D-style readers believe lying
headers (a PCD that says a million points and holds two) and a declared count near 2^32 would
otherwise allocate gigabytes. Header keywords and field names are case-insensitive.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from ...errors import FormatError
from ..types import LoadedGeometry
from .stream import RECORD_CHUNK, Reservoir, numeric_lines, parse_columns, parse_rows_slowly, record_chunks, text_blocks

MAX_POINTS = 100_000_000  # declared or counted points: streamed, so this bounds time (~1 s per 1M text rows)
MAX_COMPRESSED_POINTS = 20_000_000  # binary_compressed PCD is decoded whole (LZF over the whole body)
HEADER_BYTES = 65536
PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
             ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}  # fmt: skip
XYZ = ("x", "y", "z")
NORMALS = ("normal_x", "normal_y", "normal_z")


def load_points(path: Path, fmt: str, seed: int = 0) -> LoadedGeometry:
    """Read a point cloud: vertices (n, 3) float64, faces None, point_normals (n, 3) when present.

    ``seed`` drives the reservoir sample of clouds above :data:`~.stream.RESERVOIR_POINTS`.
    """
    reader = {"PCD": _read_pcd, "XYZ": _read_text, "PTS": _read_text, "LAS": _read_las, "LAZ": _read_las,
              "PLY": _read_ply}[fmt]  # fmt: skip
    sample = Reservoir(seed=seed)
    width, metadata, warnings = reader(path, sample)
    rows = sample.rows(width)
    transforms, dropped = sample.notes()
    metadata["load_transforms"] = transforms
    normals = np.ascontiguousarray(rows[:, 3:6]) if width == 6 else None
    return LoadedGeometry(vertices=np.ascontiguousarray(rows[:, :3]), faces=None, format=fmt, point_normals=normals,
                          warnings=warnings + dropped, metadata=metadata)  # fmt: skip


def too_many(name: str, count: int, what: str = "points") -> FormatError:
    return FormatError(f"{name}: declares {count} {what}, over the cap of {MAX_POINTS}", reason="too_large")


# ---------------------------------------------------------------- PCD


def _pcd_header(data: bytes, name: str) -> tuple[dict[str, list[str]], int]:
    """Header fields (keys upper-case: PCD keywords are case-insensitive) and where the data starts."""
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
    if "DATA" not in header or "FIELDS" not in header:
        raise FormatError(f"{name}: PCD header without FIELDS/DATA", reason="parse_error")
    return header, pos


def _pcd_layout(header: dict[str, list[str]], name: str) -> tuple[np.dtype, int]:
    fields = [f.lower() for f in header["FIELDS"]]  # survey software writes X Y Z
    sizes = header.get("SIZE", ["4"] * len(fields))
    types = header.get("TYPE", ["F"] * len(fields))
    counts = header.get("COUNT", ["1"] * len(fields))
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise FormatError(f"{name}: PCD FIELDS/SIZE/TYPE/COUNT lengths differ", reason="parse_error")
    parts = []
    try:
        for i, (field, size, typ, count) in enumerate(zip(fields, sizes, types, counts, strict=True)):
            code = PCD_TYPES.get((typ.upper(), int(size)))
            if code is None:
                raise FormatError(f"{name}: PCD field {field!r} has TYPE {typ!r} SIZE {size}; PCD defines "
                                  f"{' '.join(t + str(s) for t, s in PCD_TYPES)}", reason="parse_error")  # fmt: skip
            parts.append(
                (f"{field}_{i}" if field == "_" else field, "<" + code, (int(count),) if int(count) > 1 else ())
            )
        dtype = np.dtype(parts)
        points = int(header.get("POINTS", [0])[0]) or int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise FormatError(f"{name}: PCD header invalid ({type(exc).__name__}: {exc})", reason="parse_error") from exc
    if not set(XYZ) <= set(dtype.names or ()):
        raise FormatError(f"{name}: PCD has no x/y/z fields (FIELDS {' '.join(header['FIELDS'])})",
                          reason="parse_error")  # fmt: skip
    if points < 0:
        raise FormatError(f"{name}: negative PCD point count", reason="parse_error")
    if points > MAX_POINTS:
        raise too_many(name, points)
    return dtype, points


def _pcd_columns(dtype: np.dtype) -> tuple[str, ...]:
    """x, y, z and, when all three are there, the normals: the fields a cloud keeps."""
    return XYZ + NORMALS if set(NORMALS) <= set(dtype.names) else XYZ


def _read_pcd(path: Path, sample: Reservoir) -> tuple[int, dict, list[str]]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        header, start = _pcd_header(fh.read(HEADER_BYTES), path.name)
        dtype, points = _pcd_layout(header, path.name)
        kind = header["DATA"][0].lower() if header["DATA"] else ""
        columns = _pcd_columns(dtype)
        fh.seek(start)
        if kind == "ascii":
            _pcd_ascii(fh, dtype, points, columns, sample, path.name)
        elif kind == "binary":
            need = points * dtype.itemsize
            if size - start < need:
                raise FormatError(f"{path.name}: PCD binary data holds {size - start} of {need} bytes",
                                  reason="parse_error")  # fmt: skip
            for records in record_chunks(fh, dtype, points):
                sample.add(_stack(records, columns))
        elif kind == "binary_compressed":
            sample.add(_stack(_pcd_compressed(fh.read(), dtype, points, path.name), columns))
        else:
            raise FormatError(f"{path.name}: unknown PCD DATA kind {kind!r}", reason="parse_error")
    return len(columns), {"pcd_data": kind, "pcd_points": points}, []


def _stack(table: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    return np.stack([table[c].astype(np.float64) for c in columns], axis=1)


def _pcd_ascii(fh, dtype: np.dtype, points: int, columns: tuple[str, ...], sample: Reservoir, name: str) -> None:
    """Rows of the flattened fields (a COUNT 3 field takes three columns); the first ``points`` rows count."""
    offsets = np.cumsum([0] + [int(np.prod(dtype[n].shape or (1,))) for n in dtype.names])
    where = tuple(int(offsets[dtype.names.index(c)]) for c in columns)
    rows = 0
    for block in text_blocks(fh):
        lines = [ln for ln in block.split(b"\n") if ln.strip()][: points - rows]
        values = parse_columns(lines, where)
        if values is None:
            raise FormatError(f"{name}: PCD ascii rows near row {rows + 1} are not numeric or too short",
                              reason="parse_error")  # fmt: skip
        rows += len(values)
        sample.add(values)
        if rows >= points:
            return
    raise FormatError(f"{name}: PCD declares {points} points, holds {rows}", reason="parse_error")


def _pcd_compressed(body: bytes, dtype: np.dtype, points: int, name: str) -> np.ndarray:
    """LZF-compressed, field-by-field (structure of arrays) layout."""
    if len(body) < 8:
        raise FormatError(f"{name}: PCD binary_compressed data truncated", reason="parse_error")
    compressed, raw = struct.unpack("<II", body[:8])
    if raw != points * dtype.itemsize:
        if raw > MAX_COMPRESSED_POINTS * dtype.itemsize:
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


def _read_text(path: Path, sample: Reservoir) -> tuple[int, dict, list[str]]:
    """Whitespace/comma/semicolon separated rows, x y z first; bad rows are skipped with a warning.

    A PTS file may start with its point count; when it does, that many rows are read.
    """
    declared, rows, bad = None, 0, 0
    with path.open("rb") as fh:
        first = _SPLIT.split(fh.readline(4096).strip())  # a PTS count line is short; never read a whole file
        if len(first) == 1 and first[0].isdigit():
            declared = int(first[0])
        else:
            fh.seek(0)
        for block in text_blocks(fh):
            lines = numeric_lines(block)
            values = parse_columns(lines, (0, 1, 2))
            if values is None:  # some line is not three numbers: find them one by one
                values, skipped = parse_rows_slowly(lines, (0, 1, 2))
                bad += skipped
            if rows + len(values) > MAX_POINTS:
                raise too_many(path.name, rows + len(values), "rows")
            sample.add(values if declared is None else values[: max(declared - rows, 0)])
            rows += len(values)
    return 3, {}, _text_warnings(path, rows, bad, declared)


def _text_warnings(path: Path, rows: int, bad: int, declared: int | None) -> list[str]:
    warnings = [f"skipped {bad} rows that are not x y z numbers"] if bad else []
    if bad and not rows:
        raise FormatError(f"{path.name}: no row holds three numbers", reason="parse_error")
    if declared is not None:
        if declared > rows:
            raise FormatError(f"{path.name}: declares {declared} points, holds {rows}", reason="parse_error")
        if declared < rows:
            warnings.append(f"read the {declared} declared points, ignored {rows - declared} more rows")
    return warnings


# ---------------------------------------------------------------- PLY without faces

_PLY_TYPES = {
    "char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2", "int16": "i2",
    "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip
_SURFACE_ELEMENTS = frozenset({"face", "tristrips", "range_grid"})


def ply_cloud_layout(head: bytes) -> tuple[str, int, np.dtype, int] | None:
    """(encoding, vertex count, vertex record dtype, data offset) of a PLY that holds only points.

    None when the file has faces (or anything this reader does not stream: a vertex element
    that is not first, or has list properties); trimesh reads those.
    """
    end = head.find(b"end_header")
    if not re.match(rb"ply\r?\n", head, re.IGNORECASE) or end < 0:
        return None
    encoding, elements = "ascii", []
    for line in head[:end].decode("ascii", "replace").splitlines():
        parts = line.lower().split()  # PLY keywords and type names, read case-insensitively
        if len(parts) >= 2 and parts[0] == "format":
            encoding = parts[1]
        elif len(parts) >= 3 and parts[0] == "element" and parts[2].isdigit():
            elements.append((parts[1], int(parts[2]), []))
        elif len(parts) >= 3 and parts[0] == "property" and elements:
            elements[-1][2].append((line.split()[-1], parts[1]))
    if not elements or elements[0][0] != "vertex" or any(n in _SURFACE_ELEMENTS and c for n, c, _ in elements):
        return None
    props = elements[0][2]
    if any(typ not in _PLY_TYPES for _, typ in props):
        return None  # a list property (or an unknown type): not a flat record
    order = ">" if encoding == "binary_big_endian" else "<"
    names = [f"{name}_{i}" for i, (name, _) in enumerate(props)]
    dtype = np.dtype([(n, order + _PLY_TYPES[typ]) for n, (_, typ) in zip(names, props, strict=True)])
    return encoding, elements[0][1], dtype, head.find(b"\n", end) + 1


def _read_ply(path: Path, sample: Reservoir) -> tuple[int, dict, list[str]]:
    with path.open("rb") as fh:
        layout = ply_cloud_layout(fh.read(HEADER_BYTES))
        if layout is None:
            raise FormatError(f"{path.name}: not a PLY point cloud", reason="parse_error")
        encoding, count, dtype, start = layout
        lowered = [n.rsplit("_", 1)[0].lower() for n in dtype.names]
        if not set(XYZ) <= set(lowered):
            raise FormatError(f"{path.name}: PLY vertex element has no x/y/z properties", reason="parse_error")
        where = tuple(lowered.index(c) for c in XYZ)
        fh.seek(start)
        if encoding == "ascii":
            _ply_ascii(fh, count, dtype, where, sample, path.name)
        else:
            got = 0
            for records in record_chunks(fh, dtype, count):
                got += len(records)
                sample.add(np.stack([records[dtype.names[i]].astype(np.float64) for i in where], axis=1))
            if got < count:
                raise FormatError(f"{path.name}: PLY declares {count} vertices, holds {got}", reason="parse_error")
    return 3, {"ply_encoding": encoding}, []


def _ply_ascii(fh, count: int, dtype: np.dtype, where: tuple[int, ...], sample: Reservoir, name: str) -> None:
    """The first ``count`` lines; each value rounded to its declared type, as a binary file would hold it."""
    types = [dtype[i] for i in where]
    rows = 0
    for block in text_blocks(fh):
        lines = [ln for ln in block.split(b"\n") if ln.strip()][: count - rows]
        values = parse_columns(lines, where)
        if values is None:
            raise FormatError(f"{name}: PLY vertex rows near row {rows + 1} are not numbers", reason="parse_error")
        for k, typ in enumerate(types):
            values[:, k] = values[:, k].astype(typ.newbyteorder("="))
        rows += len(values)
        sample.add(values)
        if rows >= count:
            return
    raise FormatError(f"{name}: PLY declares {count} vertices, holds {rows}", reason="parse_error")


# ---------------------------------------------------------------- LAS / LAZ


def _read_las(path: Path, sample: Reservoir) -> tuple[int, dict, list[str]]:
    import laspy

    read = 0
    try:
        with laspy.open(str(path)) as reader:
            header = reader.header
            count = int(header.point_count)
            if count > MAX_POINTS:
                raise too_many(path.name, count)
            _check_las_extent(path, header, count)
            for chunk in reader.chunk_iterator(RECORD_CHUNK):
                read += len(chunk)
                sample.add(np.stack([np.asarray(chunk.x), np.asarray(chunk.y), np.asarray(chunk.z)], axis=1))
                if read >= count:
                    break
    except FormatError:
        raise
    except Exception as exc:  # laspy raises LaspyException, ValueError, struct.error ...
        raise FormatError(f"{path.name}: cannot read LAS/LAZ: {type(exc).__name__}: {exc}"[:500],
                          reason="parse_error") from exc  # fmt: skip
    if read != count:
        raise FormatError(f"{path.name}: LAS declares {count} points, holds {read}", reason="parse_error")
    meta = {"las_version": f"{header.version.major}.{header.version.minor}",
            "point_format": int(header.point_format.id), "compressed": bool(header.are_points_compressed)}  # fmt: skip
    return 3, meta, []


def _check_las_extent(path: Path, header, count: int) -> None:
    """Uncompressed LAS: the point records must fit in the file."""
    size = path.stat().st_size
    if header.offset_to_point_data > size:
        raise FormatError(f"{path.name}: point data offset beyond the end of the file", reason="parse_error")
    if not header.are_points_compressed:
        need = header.offset_to_point_data + count * header.point_format.size
        if need > size:
            raise FormatError(f"{path.name}: LAS declares {count} points, the file is too short", reason="parse_error")
