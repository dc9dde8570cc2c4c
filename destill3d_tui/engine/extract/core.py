"""The extraction pipeline: a file (or a loaded geometry) in, a :class:`Snapshot` out.

load (references checked first) -> preprocess -> sample -> normalise to the unit sphere ->
per-point features -> global features -> optional views. Pure apart from reading the file:
no database, an explicit seed, and the same file + options + seed give the same arrays.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import GeometryError
from ..store.snapshot import Features, Geometry, ProcessingMetadata, Provenance, Snapshot
from . import features as gf
from .pointfeatures import compute_point_features
from .preprocess import PreparedGeometry, preprocess
from .sampling import sample
from .topology import column_bounds
from .types import ExtractOptions, LoadedGeometry

EXTRACTOR_VERSION = "1.1.0"  # bump when any array of a snapshot would change for the same input
_LIBRARIES = ("numpy", "scipy", "numba", "trimesh", "open3d", "OCP", "laspy")
stage_clock: Callable[[], float] = time.perf_counter  # bench/extract.py swaps in process CPU time


def extract_file(
    path: str | Path,
    *,
    points: int = 2048,
    strategy: str = "hybrid",
    views: bool = False,
    seed: int = 0,
    options: ExtractOptions | None = None,
    provenance: Provenance | None = None,
) -> Snapshot:
    """Extract a snapshot from the 3D file at ``path``.

    When ``options`` is given it decides everything and the keyword shortcuts are ignored.

    Raises
    ------
    FormatError, GeometryError, TessellationError
        with their stable ``reason`` codes.
    """
    from .load import load_geometry

    path = Path(path)
    if options is None:
        options = ExtractOptions(points=points, strategy=strategy, views=views, seed=seed)
    timings: dict[str, float] = {}
    with _library_warnings() as caught:
        with _timed(timings, "load"):
            geom = load_geometry(path, options)
        snapshot = snapshot_from_geometry(geom, options, provenance, _timings=timings)
    snapshot.processing.warnings.extend(caught)
    _fill_file_provenance(snapshot.provenance, path, geom.format)
    snapshot.processing.timings_ms["total"] = round(sum(v for k, v in timings.items() if k != "total"), 3)
    return snapshot


def snapshot_from_geometry(
    geom: LoadedGeometry,
    options: ExtractOptions | None = None,
    provenance: Provenance | None = None,
    *,
    _timings: dict[str, float] | None = None,
) -> Snapshot:
    """Everything after loading: ``geom`` (file units and axes) -> a unit-sphere snapshot."""
    options = options or ExtractOptions()
    timings = _timings if _timings is not None else {}
    with _timed(timings, "preprocess"):
        prepared = preprocess(geom, options)
    with _timed(timings, "sample"):
        drawn = sample(
            prepared.vertices, prepared.faces, options.points, options.strategy,
            seed=options.seed, oversample_ratio=options.oversample_ratio, face_areas=prepared.face_areas,
        )  # fmt: skip
    centroid, scale = _normalisation(drawn.points)
    unit = ((drawn.points - centroid) / scale).astype(np.float32)
    with _timed(timings, "normals"):
        exact_normals = _exact_normals(prepared, drawn.source)
        pf = compute_point_features(unit, exact_normals, k=options.normal_k, orient=options.orient_normals)
    with _timed(timings, "global_features"):
        measures = gf.mesh_measures(prepared, options.seed)
        global_vector = gf.global_features(unit, pf.curvature, measures, scale)
    rendered = None
    if options.views:
        with _timed(timings, "views"):
            rendered = _render(prepared, unit, centroid, scale, options)
    _check_finite(unit, pf.normals, pf.curvature, global_vector)
    warnings = list(geom.warnings) + prepared.warnings
    if drawn.padded:
        warnings.append(f"only {options.points - drawn.padded} points in the file; padded by resampling")
    geometry = Geometry(unit, pf.normals, pf.curvature, pf.density, rendered, tuple(map(float, centroid)), scale)
    return Snapshot(
        geometry=geometry,
        features=_features(prepared, measures, global_vector),
        provenance=replace(provenance) if provenance is not None else Provenance(original_format=geom.format),
        processing=_processing(geom, prepared, options, timings, warnings),
    )


@contextmanager
def _library_warnings() -> Iterator[list[str]]:
    """Warnings the libraries raise (numpy RuntimeWarning, trimesh UserWarning, ...) while one file is
    extracted: kept for the snapshot's warnings, never printed on stderr beside ``--json`` output."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    found.extend(dict.fromkeys(f"{w.category.__name__}: {w.message}"[:300] for w in caught))


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = stage_clock()
    try:
        yield
    finally:
        timings[stage] = round((stage_clock() - start) * 1000.0, 3)


def _normalisation(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid (3,) and the largest distance from it; the unit sphere is (p - c) / scale.

    The distance is computed on offsets divided by their largest component, so coordinates
    near the float64 limit do not overflow when squared.
    """
    centroid = points.mean(axis=0)
    offsets = points - centroid
    largest = float(np.abs(offsets).max()) if np.isfinite(offsets).all() else np.inf
    if not np.isfinite(largest) or not np.isfinite(centroid).all():
        raise GeometryError("coordinates are too large to normalise (overflow)", reason="non_finite")
    if largest <= 0:
        raise GeometryError("every sampled point is at the same place", reason="degenerate")
    scale = largest * float(np.sqrt(((offsets / largest) ** 2).sum(axis=1).max()))
    return centroid, scale


def _exact_normals(prepared: PreparedGeometry, source: np.ndarray) -> np.ndarray | None:
    """Outward face normals for mesh samples, a file's own normals for cloud samples, else None."""
    if prepared.face_normals is not None:
        return prepared.face_normals[source]
    if prepared.point_normals is not None:
        return prepared.point_normals[source]
    return None


def _render(prepared: PreparedGeometry, unit: np.ndarray, centroid: np.ndarray, scale: float, options: ExtractOptions):
    from .views import render_mesh_views, render_point_views

    if prepared.faces is None:
        return render_point_views(unit, options.view_count, options.view_resolution)
    verts = (prepared.vertices - centroid) / scale
    return render_mesh_views(verts, prepared.faces, options.view_count, options.view_resolution)


def _check_finite(*arrays: np.ndarray) -> None:
    for a in arrays:
        if not np.isfinite(a).all():
            raise GeometryError("extraction produced NaN/inf values (coordinates out of range)", reason="non_finite")


def _features(prepared: PreparedGeometry, measures: gf.MeshMeasures, global_vector: np.ndarray) -> Features:
    lo, hi = column_bounds(prepared.vertices)
    return Features(
        global_features=global_vector,
        bbox_min=tuple(map(float, lo)),
        bbox_max=tuple(map(float, hi)),
        surface_area=measures.area,
        volume=measures.volume,
        is_watertight=measures.watertight,
        vertex_count=prepared.original_vertex_count,
        face_count=prepared.original_face_count,
        quality=prepared.quality,
    )


def _processing(
    geom: LoadedGeometry,
    prepared: PreparedGeometry,
    options: ExtractOptions,
    timings: dict[str, float],
    warnings: list[str],
) -> ProcessingMetadata:
    from ... import __version__

    q = prepared.quality
    score = (1.0 - q.degenerate_share) * (0.8 if q.non_manifold else 1.0) * (0.5 if q.too_simple else 1.0)
    return ProcessingMetadata(
        destill3d_version=__version__,
        extractor_version=EXTRACTOR_VERSION,
        target_points=options.points,
        sampling_strategy=options.strategy,
        oversample_ratio=options.oversample_ratio,
        seed=options.seed,
        precision=options.precision,
        tessellation=dict(geom.tessellation),
        library_versions=library_versions(),
        timings_ms=timings,
        warnings=warnings,
        up_axis=geom.up_axis or "",
        transforms=[*geom.metadata.get("load_transforms", ()), *prepared.transforms],
        mesh_quality_score=round(float(score), 4),
    )


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the arrays (only those already imported)."""
    import sys

    return dict(_versions(tuple(name for name in _LIBRARIES if name in sys.modules)))


@cache
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Installed versions of ``names``: read once per process (importlib.metadata costs ~30 ms a call set)."""
    import sys
    from importlib import metadata

    dists = {"OCP": "cadquery-ocp", "open3d": "open3d"}
    out: list[tuple[str, str]] = []
    for name in names:
        try:
            out.append((name, metadata.version(dists.get(name, name))))
        except metadata.PackageNotFoundError:
            out.append((name, getattr(sys.modules[name], "__version__", "unknown")))
    return tuple(out)


def _fill_file_provenance(p: Provenance, path: Path, fmt: str) -> None:
    """Original filename, format, size and sha256, where the caller did not set them."""
    p.original_filename = p.original_filename or path.name
    p.original_format = p.original_format or fmt
    if not p.original_file_size or not p.original_file_hash:
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
        p.original_file_size = p.original_file_size or size
        p.original_file_hash = p.original_file_hash or digest.hexdigest()
