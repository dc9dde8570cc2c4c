"""Mesh formats through trimesh: STL, OBJ(+MTL), PLY, OFF, glTF/GLB, 3MF, DAE (pycollada).

Scenes are flattened with their node transforms, so instanced parts appear once per node.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ...errors import FormatError, GeometryError
from ..types import LoadedGeometry
from ..untrusted import library_failure

TRIMESH_TYPES = {"STL": "stl", "OBJ": "obj", "PLY": "ply", "OFF": "off", "GLTF": "gltf", "GLB": "glb",
                 "3MF": "3mf", "DAE": "dae"}  # fmt: skip


UP_AXIS = {"GLTF": "y", "GLB": "y", "3MF": "z"}  # what the format's specification fixes


def load_trimesh(path: Path, fmt: str) -> LoadedGeometry:
    """Load ``path`` with trimesh and flatten its scene.

    Returns
    -------
    LoadedGeometry
        vertices (n, 3) float64, faces (m, 3) int64 (None when the file holds only points).
    """
    if fmt == "STL":
        direct = read_binary_stl(path)
        if direct is not None:
            return direct
    scene = _load_scene(path, fmt)
    warnings: list[str] = []
    meshes, clouds = _flatten(scene, warnings)
    if meshes:
        geometry = _merge_meshes(meshes, fmt, len(scene.graph.nodes_geometry))
        geometry.warnings.extend(warnings)
        geometry.up_axis = UP_AXIS.get(fmt)
        return geometry
    if clouds:
        points = np.concatenate(clouds, axis=0)
        return LoadedGeometry(vertices=points, faces=None, format=fmt, mesh_count=len(clouds), warnings=warnings)
    raise GeometryError(f"{path.name}: the {fmt} file holds no faces and no points", reason="empty_geometry")


STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def read_binary_stl(path: Path) -> LoadedGeometry | None:
    """A binary STL whose size matches its face count, read with one ``np.frombuffer``; else None.

    The same arrays trimesh builds (corner ``3i + k`` of face ``i``, float32 widened to float64)
    without its Trimesh/Scene construction: ~10x faster on a 100K-face file. Anything else
    (ASCII, trailing bytes after the records) returns None and goes through trimesh.

    Returns
    -------
    LoadedGeometry with vertices (3m, 3) float64 and faces (m, 3) int64, or None
    """
    with path.open("rb") as fh:
        data = fh.read()
    if len(data) < 84:
        return None
    count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
    if count == 0 or 84 + STL_RECORD.itemsize * count != len(data):
        return None
    records = np.frombuffer(data, dtype=STL_RECORD, count=count, offset=84)
    vertices = records["corners"].reshape(-1, 3).astype(np.float64)
    faces = np.arange(3 * count, dtype=np.int64).reshape(-1, 3)
    return LoadedGeometry(vertices=vertices, faces=faces, format="STL", mesh_count=1, metadata={"scene_nodes": 1})


def _load_scene(path: Path, fmt: str):
    import trimesh
    from trimesh.resolvers import FilePathResolver

    log = logging.getLogger("trimesh")
    was_disabled, log.disabled = log.disabled, True  # a missing texture is logged as a traceback; not ours
    try:
        return trimesh.load(
            str(path),
            file_type=TRIMESH_TYPES[fmt],
            force="scene",
            process=False,
            resolver=FilePathResolver(str(path)),
            allow_remote=False,
            skip_materials=True,  # textures are never needed for geometry, and never read
        )
    except (GeometryError, FormatError):
        raise
    except MemoryError:
        raise
    except Exception as exc:  # trimesh's failures come as any exception type (see badinputs README)
        raise FormatError(library_failure(path, fmt, exc), format=fmt, reason="parse_error") from exc
    finally:
        log.disabled = was_disabled


def _flatten(scene, warnings: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Every node's geometry in world coordinates: meshes as (vertices, faces), clouds as points."""
    import trimesh

    meshes: list[tuple[np.ndarray, np.ndarray]] = []
    clouds: list[np.ndarray] = []
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry.get(geom_name)
        if geom is None:
            continue
        if isinstance(geom, trimesh.Trimesh):
            verts = np.asarray(geom.vertices, dtype=np.float64)
            declared = np.asarray(geom.faces, dtype=np.int64).reshape(-1, 3)
            faces = valid_faces(declared, len(verts), warnings)
            if len(faces) == 0:
                if len(verts) and len(declared) == 0:  # vertices only: a point cloud
                    clouds.append(_apply(transform, verts))
                continue
            meshes.append((_apply(transform, verts), faces))
        elif isinstance(geom, trimesh.PointCloud) and len(geom.vertices):
            clouds.append(_apply(transform, np.asarray(geom.vertices, dtype=np.float64)))
    return meshes, clouds


def _apply(transform: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """(n, 3) points through a 4x4 homogeneous transform; identity skipped to keep the exact bytes."""
    transform = np.asarray(transform, dtype=np.float64)
    if np.array_equal(transform, np.eye(4)):
        return verts
    with np.errstate(all="ignore"):
        return verts @ transform[:3, :3].T + transform[:3, 3]


def _merge_meshes(meshes: list[tuple[np.ndarray, np.ndarray]], fmt: str, nodes: int) -> LoadedGeometry:
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
    vertices = np.concatenate([v for v, _ in meshes], axis=0)
    faces = np.concatenate([f + off for (_, f), off in zip(meshes, offsets, strict=True)], axis=0)
    return LoadedGeometry(
        vertices=vertices, faces=faces, format=fmt, mesh_count=max(len(meshes), 1), metadata={"scene_nodes": nodes}
    )


def valid_faces(faces: np.ndarray, vertex_count: int, warnings: list[str]) -> np.ndarray:
    """Drop faces whose indices fall outside ``[0, vertex_count)``; say how many went.

    faces : (m, 3) int64 -> (k, 3) int64 with k <= m
    """
    ok = np.all((faces >= 0) & (faces < vertex_count), axis=1)
    if not ok.all():
        warnings.append(f"dropped {int((~ok).sum())} faces with vertex indices out of range")
        return faces[ok]
    return faces
