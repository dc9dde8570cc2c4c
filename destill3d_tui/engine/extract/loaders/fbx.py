"""FBX through Open3D's assimp-based ``read_triangle_model`` (binary and ASCII FBX 7.x).

assimp reads FBX 6.1 (``maya_cube_6100_binary.fbx``) as zero meshes, so binary files older
than 7.0 go through :mod:`fbx_legacy`; ASCII FBX 6 is refused with ``format_unsupported``. Header sizes are
checked against the file first: assimp trusts them and allocates what they claim.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from ...errors import FormatError, GeometryError
from ..types import LoadedGeometry
from .mesh import valid_faces

BINARY_MAGIC = b"Kaydara FBX Binary  \x00"
MIN_VERSION = 7000
_ARRAY_COUNT = re.compile(rb"\*(\d+)")
_UP_AXIS = re.compile(rb'"UpAxis",\s*"int",\s*"Integer",\s*"",\s*(\d)')


def fbx_version(head: bytes) -> tuple[str, int | None]:
    """(``binary`` | ``ascii``, version such as 7400, or None when the header does not say)."""
    if head.startswith(BINARY_MAGIC):
        return "binary", struct.unpack("<I", head[23:27])[0] if len(head) >= 27 else None
    match = re.match(rb";\s*FBX\s+(\d+)\.(\d+)\.(\d+)", head)
    if match:
        return "ascii", int(match.group(1)) * 1000 + int(match.group(2)) * 100
    return "ascii", None


def load_fbx(path: Path) -> LoadedGeometry:
    """Read every mesh of an FBX file, node transforms applied by assimp.

    Returns vertices (n, 3) float64, faces (m, 3) int64.
    """
    data = path.read_bytes()
    encoding, version = fbx_version(data[:64])
    if encoding == "binary":
        check_binary_nodes(data, path.name)
    else:
        check_ascii_arrays(data, path.name)
    if version is not None and version < MIN_VERSION:
        geometry = _read_legacy(path, data, encoding, version)
    else:
        geometry = _read_with_open3d(path)
    geometry.metadata.update({"fbx_encoding": encoding, "fbx_version": version})
    geometry.up_axis = _up_axis(data)
    return geometry


def _read_legacy(path: Path, data: bytes, encoding: str, version: int) -> LoadedGeometry:
    """FBX 6.x: assimp reads it as zero meshes, so binary files go through our own reader."""
    from .fbx_legacy import read_fbx6_meshes

    unsupported = FormatError(
        f"{path.name}: FBX {version / 1000:.1f} {encoding} holds no mesh this reader understands (assimp reads "
        "FBX 6 as zero meshes; only binary FBX 6 models with Vertices/PolygonVertexIndex are read here). "
        "Re-export the model as FBX 7.x, glTF or OBJ",
        format="FBX",
        reason="format_unsupported",
    )
    if encoding != "binary":
        raise unsupported
    meshes, warnings = read_fbx6_meshes(data, path.name)
    meshes = [(v, f) for v, f in meshes if len(f)]
    if not meshes:
        raise unsupported
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
    return LoadedGeometry(
        vertices=np.concatenate([v for v, _ in meshes]),
        faces=np.concatenate([f + o for (_, f), o in zip(meshes, offsets, strict=True)]),
        format="FBX",
        mesh_count=len(meshes),
        warnings=[*warnings, f"FBX {version / 1000:.1f}: read with Destill3D's FBX 6 reader"],
    )


def _read_with_open3d(path: Path) -> LoadedGeometry:
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    model = o3d.io.read_triangle_model(str(path))
    verts, faces, offset, warnings = [], [], 0, []
    for item in model.meshes:
        v = np.asarray(item.mesh.vertices, dtype=np.float64).reshape(-1, 3)
        f = valid_faces(np.asarray(item.mesh.triangles, dtype=np.int64).reshape(-1, 3), len(v), warnings)
        if len(f):
            verts.append(v)
            faces.append(f + offset)
            offset += len(v)
    if not faces:
        raise GeometryError(f"{path.name}: the FBX reader found no triangle meshes", reason="empty_geometry")
    return LoadedGeometry(
        vertices=np.concatenate(verts), faces=np.concatenate(faces), format="FBX", mesh_count=len(faces),
        warnings=warnings,
    )  # fmt: skip


def check_binary_nodes(data: bytes, name: str) -> None:
    """Walk the top-level node records; an end offset or length beyond the file is refused."""
    if len(data) < 27:
        raise FormatError(f"{name}: truncated FBX header", reason="parse_error")
    version = struct.unpack("<I", data[23:27])[0]
    wide = version >= 7500  # 64-bit node header fields from FBX 7.5 on
    fmt, head = ("<QQQB", 25) if wide else ("<IIIB", 13)
    pos, size = 27, len(data)
    while pos + head <= size:
        end, props, prop_len, _name_len = struct.unpack(fmt, data[pos : pos + head])
        if end == 0:
            return  # the null record closes the top level
        if end > size or prop_len > size or props > size or end <= pos:
            raise FormatError(
                f"{name}: FBX node at byte {pos} claims {end} / {prop_len} bytes in a {size}-byte file",
                reason="too_large",
            )
        pos = end
    if pos < size - 160:  # the footer is at most ~160 bytes; anything else is a broken record
        raise FormatError(f"{name}: FBX node records end early at byte {pos}", reason="parse_error")


def check_ascii_arrays(data: bytes, name: str) -> None:
    """``*N`` array sizes must fit in the bytes that follow (each value takes at least 2 bytes)."""
    for match in _ARRAY_COUNT.finditer(data):
        count = int(match.group(1))
        if count * 2 - 1 > len(data) - match.end():
            raise FormatError(
                f"{name}: FBX array declares {count} values but the file ends first", reason="parse_error"
            )


def _up_axis(data: bytes) -> str | None:
    """ASCII FBX states its up axis in GlobalSettings (0 = x, 1 = y, 2 = z); binary ones are not parsed."""
    match = None if data.startswith(BINARY_MAGIC) else _UP_AXIS.search(data[:2_000_000])
    return "xyz"[int(match.group(1))] if match and match.group(1) in b"012" else None
