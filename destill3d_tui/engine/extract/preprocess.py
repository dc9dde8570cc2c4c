"""Stage 2: clean a loaded geometry before sampling.

Checks and repairs, in order: shape and finiteness of the arrays (``non_finite``), face
indices in range, faces with repeated indices, vertex welding (topology needs shared
indices; STL and per-face CAD tessellations share none), zero-area and duplicate faces,
simplification above ``ExtractOptions.max_faces`` (spec 13.2), edge/component analysis for
the quality flags, and a consistent outward winding so that the face normal of a sampled
point is its exact, outward surface normal.

Simplification uses Open3D's quadric decimation: it keeps the surface closed and its shape,
so area, volume, watertightness, sphericity and convexity stay meaningful. Area-weighted face
subsampling would be cheaper but opens the mesh (volume lost) and leaves holes in the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GeometryError
from ..store.snapshot import QualityFlags
from . import kernels
from . import topology as topo
from .types import ExtractOptions, LoadedGeometry

MIN_FACES = 4  # a tetrahedron: fewer faces cannot bound a solid
MIN_POINTS = 64  # fewer distinct points than this do not describe a shape
SIMPLIFY_TARGET = 1_000_000  # spec 13.2 simplification target (capped by max_faces)
AREA_EPS = 1e-14  # faces with area below AREA_EPS * diagonal**2 are degenerate


@dataclass
class PreparedGeometry:
    """A cleaned geometry ready for sampling.

    vertices : (n, 3) float64, original units
    faces : (m, 3) int64 consistently wound, outward; None for a point cloud
    point_normals : (n, 3) float64 unit normals carried by a point cloud, or None
    face_normals : (m, 3) float64 unit outward normals, or None
    face_areas : (m,) float64, or None
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    point_normals: np.ndarray | None = None
    face_normals: np.ndarray | None = None
    face_areas: np.ndarray | None = None
    watertight: bool = False
    winding_consistent: bool = False
    signed_volume: float | None = None  # of a closed, consistently wound mesh (from preprocessing's sums)
    quality: QualityFlags = field(default_factory=QualityFlags)
    original_vertex_count: int = 0
    original_face_count: int = 0
    warnings: list[str] = field(default_factory=list)
    transforms: list[str] = field(default_factory=list)

    @property
    def is_point_cloud(self) -> bool:
        return self.faces is None


def preprocess(geom: LoadedGeometry, options: ExtractOptions) -> PreparedGeometry:
    """Validate and clean ``geom``.

    Raises
    ------
    GeometryError
        ``empty_geometry`` when no surface or points remain, ``non_finite`` for NaN/inf
        coordinates, ``degenerate`` when everything collapses to a point.
    """
    vertices = _checked_vertices(geom.vertices)
    if geom.faces is None:
        return _prepare_cloud(vertices, geom.point_normals)
    return _prepare_mesh(vertices, np.asarray(geom.faces), options)


def _checked_vertices(vertices: np.ndarray) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    if v.size == 0:
        raise GeometryError("the file holds no vertices or points", reason="empty_geometry")
    if v.ndim != 2 or v.shape[1] != 3:
        raise GeometryError(f"vertices must be (n, 3), got {v.shape}", reason="empty_geometry")
    if np.isfinite(v).all():  # the common case, without a per-row pass
        return v
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise GeometryError(f"{int(bad.sum())} of {len(v)} vertices have NaN/inf coordinates", reason="non_finite")
    return v


def _prepare_cloud(points: np.ndarray, normals: np.ndarray | None) -> PreparedGeometry:
    """Point clouds: finite normals are kept (unit length); the rest is quality flags."""
    warnings: list[str] = []
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64)
        length = np.linalg.norm(normals, axis=1) if normals.shape == points.shape else None
        if length is None or not np.isfinite(length).all() or (length < 1e-12).any():
            warnings.append("point normals in the file were missing, zero or non-finite; estimated instead")
            normals = None
        else:
            normals = normals / length[:, None]
    lo, hi = topo.column_bounds(points)
    if not (hi - lo).any():
        raise GeometryError("all points coincide", reason="degenerate")
    distinct = _distinct_count(points, MIN_POINTS)
    quality = QualityFlags(open=True, component_count=1, too_simple=distinct < MIN_POINTS, is_point_cloud=True)
    return PreparedGeometry(
        points, None, point_normals=normals, quality=quality, original_vertex_count=len(points), warnings=warnings
    )


def _distinct_count(points: np.ndarray, enough: int) -> int:
    """Number of distinct rows, counting only as far as ``enough`` on a sample (cheap on 1M points)."""
    head = points[: enough * 4]
    return len(np.unique(head, axis=0)) if len(head) else 0


def _prepare_mesh(vertices: np.ndarray, faces: np.ndarray, options: ExtractOptions) -> PreparedGeometry:
    original_faces = len(faces)
    warnings: list[str] = []
    transforms: list[str] = []
    faces = _checked_faces(faces, len(vertices), warnings)
    if len(faces) == 0:
        raise GeometryError("the mesh has no faces with valid vertex indices", reason="empty_geometry")
    vertices, faces = topo.compact_vertices(vertices, faces)
    vertices, faces = topo.weld_vertices(vertices, faces)
    faces, cross, dropped = _drop_degenerate(vertices, faces)
    if len(faces) == 0:
        raise GeometryError(f"all {original_faces} faces are degenerate (zero area)", reason="degenerate")
    vertices, faces = topo.compact_vertices(vertices, faces)
    if len(faces) > options.max_faces:
        vertices, faces = _simplify(vertices, faces, min(SIMPLIFY_TARGET, options.max_faces))
        cross = face_cross(vertices, faces)
        transforms.append(f"simplified:quadric:{original_faces}->{len(faces)}")
    stats = topo.edge_stats(faces, len(vertices))
    scores = topo.outward_scores(vertices, faces, cross)  # 6x signed volume per face: orientation and volume
    flip = topo.orient_faces(vertices, faces, stats, cross, scores)
    if flip.any():
        scores = np.where(flip, -scores, scores)
        faces = np.where(flip[:, None], faces[:, ::-1], faces)
        cross[flip] *= -1.0
        transforms.append(f"rewound:{int(flip.sum())}")
        if stats.watertight and not stats.winding_consistent:
            stats = topo.edge_stats(faces, len(vertices))  # a non-orientable surface stays inconsistent
    components = topo.component_count(faces, len(vertices))
    length = np.sqrt(np.einsum("ij,ij->i", cross, cross))
    normals = cross / length[:, None]  # degenerate faces are gone: every length > 0
    if dropped:
        warnings.append(f"dropped {dropped} degenerate or duplicate faces of {original_faces}")
    quality = QualityFlags(
        degenerate_share=float(dropped / original_faces),
        non_manifold=stats.non_manifold,
        open=not stats.watertight,
        component_count=components,
        too_simple=len(faces) < MIN_FACES,
    )
    return PreparedGeometry(
        vertices, faces, face_normals=normals, face_areas=0.5 * length, watertight=stats.watertight,
        signed_volume=float(scores.sum() / 6.0) if stats.watertight and stats.winding_consistent else None,
        winding_consistent=stats.winding_consistent, quality=quality,
        original_vertex_count=len(vertices), original_face_count=original_faces,
        warnings=warnings, transforms=transforms,
    )  # fmt: skip


def _checked_faces(faces: np.ndarray, n_vertices: int, warnings: list[str]) -> np.ndarray:
    """(m, 3) int64 faces with every index in range (faces with a bad index are dropped)."""
    if faces.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise GeometryError(f"faces must be (m, 3) triangles, got {faces.shape}", reason="degenerate")
    f = faces.astype(np.int64, copy=False)
    if f.min() >= 0 and f.max() < n_vertices:  # the common case, without a per-row pass
        return f
    in_range = ((f >= 0) & (f < n_vertices)).all(axis=1)
    warnings.append(f"dropped {int((~in_range).sum())} faces with vertex indices out of range")
    return f[in_range]


def face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m, 3) cross products (v1 - v0) x (v2 - v0): twice the area along the winding normal."""
    return kernels.face_cross(np.ascontiguousarray(vertices, dtype=np.float64), np.ascontiguousarray(faces))


def _drop_degenerate(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop faces that welding collapsed, faces of (near) zero area and duplicate faces.

    Returns
    -------
    faces : (k, 3) int64, cross : (k, 3) float64 of the kept faces, dropped : int
    """
    m = len(faces)
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    if not distinct.all():  # usually all are: no copy
        faces = faces[distinct]
    cross = face_cross(vertices, faces)
    lo, hi = topo.column_bounds(vertices)
    diagonal = float(np.linalg.norm(hi - lo))
    limit = (2.0 * AREA_EPS * diagonal * diagonal) ** 2
    keep = np.flatnonzero(np.einsum("ij,ij->i", cross, cross) > limit)
    if len(keep) == len(faces):  # nothing degenerate (the common case): no copies
        keep = topo.unique_faces(faces, len(vertices))
        if len(keep) == len(faces):
            return faces, cross, m - len(faces)
    elif len(keep):
        keep = keep[topo.unique_faces(faces[keep], len(vertices))]
    return faces[keep], cross[keep], m - len(keep)


def _simplify(vertices: np.ndarray, faces: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(faces.astype(np.int32))
    )
    small = mesh.simplify_quadric_decimation(target_number_of_triangles=int(target))
    v = np.asarray(small.vertices, dtype=np.float64)
    f = np.asarray(small.triangles, dtype=np.int64)
    f, _, _ = _drop_degenerate(v, f)
    return topo.compact_vertices(v, f)
