"""Binary FBX 6.x meshes, which assimp (and so Open3D) reads as zero meshes.

FBX 6 keeps a mesh's ``Vertices`` and ``PolygonVertexIndex`` directly in its ``Objects/Model``
node; polygons end at a negative index (``-i - 1``). Each model's Lcl Translation / Rotation
(XYZ Euler, degrees) / Scaling is composed with its parents' (``Connections``, ``Connect: "OO",
child, parent``), so a hierarchy lands where the scene puts it; pivots and pre-rotations are
not read. Every read is bounds-checked, because the file is untrusted.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from ...errors import FormatError
from .limits import MAX_FACES, MAX_VERTICES

_SCALARS = {"Y": ("<h", 2), "C": ("<?", 1), "I": ("<i", 4), "L": ("<q", 8), "F": ("<f", 4), "D": ("<d", 8)}
_ARRAYS = {"f": "<f4", "d": "<f8", "l": "<i8", "i": "<i4", "b": "<u1"}
MAX_DEPTH = 64


@dataclass
class Node:
    name: str
    props: list = field(default_factory=list)
    children: list[Node] = field(default_factory=list)

    def child(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name = data, name
        self.wide = struct.unpack("<I", data[23:27])[0] >= 7500

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.name}: broken FBX record ({what})", reason="parse_error")

    def take(self, pos: int, size: int) -> bytes:
        if size < 0 or pos + size > len(self.data):
            raise self.fail(f"{size} bytes at {pos} past the end")
        return self.data[pos : pos + size]

    def nodes(self, pos: int, end: int, depth: int = 0) -> list[Node]:
        if depth > MAX_DEPTH:
            raise self.fail("nesting too deep")
        out = []
        fmt, head = ("<QQQB", 25) if self.wide else ("<IIIB", 13)
        while pos + head <= end:
            stop, count, length, name_len = struct.unpack(fmt, self.take(pos, head))
            if stop == 0:
                break
            if stop <= pos or stop > end:
                raise self.fail(f"node end {stop}")
            name = self.take(pos + head, name_len).decode("ascii", "replace")
            props_at = pos + head + name_len
            node = Node(name, self.props(props_at, count, props_at + length))
            node.children = self.nodes(props_at + length, stop, depth + 1)
            out.append(node)
            pos = stop
        return out

    def props(self, pos: int, count: int, end: int) -> list:
        values = []
        for _ in range(count):
            kind = chr(self.take(pos, 1)[0])
            pos += 1
            if kind in _SCALARS:
                fmt, size = _SCALARS[kind]
                values.append(struct.unpack(fmt, self.take(pos, size))[0])
                pos += size
            elif kind in "SR":
                size = struct.unpack("<I", self.take(pos, 4))[0]
                values.append(self.take(pos + 4, size))
                pos += 4 + size
            elif kind in _ARRAYS:
                n, encoding, size = struct.unpack("<III", self.take(pos, 12))
                values.append(self.array(self.take(pos + 12, size), kind, n, encoding))
                pos += 12 + size
            else:
                raise self.fail(f"property type {kind!r}")
            if pos > end:
                raise self.fail("properties run past their node")
        return values

    def array(self, raw: bytes, kind: str, n: int, encoding: int) -> np.ndarray:
        dtype = np.dtype(_ARRAYS[kind])
        if n > 3 * MAX_FACES:
            raise FormatError(f"{self.name}: FBX array of {n} values", reason="too_large")
        if encoding == 1:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(raw, n * dtype.itemsize)  # never inflate past what the count allows
        if len(raw) != n * dtype.itemsize:
            raise self.fail(f"array of {n} values holds {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype)


def read_fbx6_meshes(data: bytes, name: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str]]:
    """Meshes ((n, 3) float64 vertices, (m, 3) int64 triangles) of a binary FBX 6 file, and warnings."""
    reader = _Reader(data, name)
    top = reader.nodes(27, len(data))
    objects = next((n for n in top if n.name == "Objects"), None)
    models = [m for m in (objects.children if objects else []) if m.name == "Model"]
    world = _world_matrices(models, next((n for n in top if n.name == "Connections"), None))
    meshes, warnings = [], []
    for index, model in enumerate(models):
        if model.child("Vertices") is None or model.child("PolygonVertexIndex") is None:
            continue
        vertices = _numbers(model.child("Vertices")).reshape(-1, 3)
        if len(vertices) > MAX_VERTICES:
            raise FormatError(f"{name}: FBX model with {len(vertices)} vertices", reason="too_large")
        triangles = _triangulate(_numbers(model.child("PolygonVertexIndex")).astype(np.int64), len(vertices), name)
        matrix = world[index]
        meshes.append((vertices @ matrix[:3, :3].T + matrix[:3, 3], triangles))
    return meshes, warnings


def _world_matrices(models: list[Node], connections: Node | None) -> list[np.ndarray]:
    """Each model's 4x4 local matrix composed with its ancestors' (cycles and deep chains cut)."""
    key = [m.props[0] if m.props and isinstance(m.props[0], bytes) else None for m in models]
    index = {k: i for i, k in enumerate(key) if k is not None}
    parent: dict[int, int] = {}
    for link in connections.children if connections else []:
        props = link.props
        if link.name == "Connect" and len(props) >= 3 and props[0] == b"OO" and props[1] in index and props[2] in index:
            parent[index[props[1]]] = index[props[2]]
    local = [_local_matrix(m) for m in models]
    world = []
    for i in range(len(models)):
        matrix, seen, at = local[i], {i}, i
        while at in parent and parent[at] not in seen and len(seen) <= MAX_DEPTH:
            at = parent[at]
            seen.add(at)
            matrix = local[at] @ matrix
        world.append(matrix)
    return world


def _numbers(node: Node) -> np.ndarray:
    """A node's numbers: one array property (newer writers) or one scalar property per value."""
    if len(node.props) == 1 and isinstance(node.props[0], np.ndarray):
        return node.props[0].astype(np.float64)
    return np.asarray([float(v) for v in node.props if isinstance(v, (int, float))], dtype=np.float64)


def _triangulate(indices: np.ndarray, vertex_count: int, name: str) -> np.ndarray:
    """Polygons closed by a negative index (``-i - 1``) -> (m, 3) triangle fans."""
    triangles, polygon = [], []
    for raw in indices.tolist():
        polygon.append(raw if raw >= 0 else -raw - 1)
        if raw < 0:
            triangles.extend((polygon[0], polygon[k], polygon[k + 1]) for k in range(1, len(polygon) - 1))
            polygon = []
    faces = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= vertex_count):
        raise FormatError(f"{name}: FBX polygon index out of range", reason="parse_error")
    return faces


def _local_matrix(model: Node) -> np.ndarray:
    """4x4 ``T @ R @ S`` from the model's Properties60 Lcl Translation / Rotation / Scaling."""
    props = {}
    for prop in (model.child("Properties60") or Node("")).children:
        if prop.name == "Property" and prop.props and isinstance(prop.props[0], bytes):
            numbers = [float(v) for v in prop.props[3:] if isinstance(v, (int, float))]
            props[prop.props[0].decode("ascii", "replace")] = numbers
    translate = np.asarray(props.get("Lcl Translation", [0, 0, 0])[:3], dtype=np.float64)
    rotate = np.radians(props.get("Lcl Rotation", [0, 0, 0])[:3])
    scale = np.asarray(props.get("Lcl Scaling", [1, 1, 1])[:3], dtype=np.float64)
    matrix = np.eye(4)
    complete = len(translate) == 3 and len(rotate) == 3 and len(scale) == 3
    if complete and np.isfinite([*translate, *rotate, *scale]).all():
        matrix[:3, :3] = _euler_xyz(*rotate) * scale
        matrix[:3, 3] = translate
    return matrix


def _euler_xyz(x: float, y: float, z: float) -> np.ndarray:
    """FBX's default rotation order: about X first, then Y, then Z."""
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx
