"""Global features, preprocessing and the snapshot pipeline on generated meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from destill3d_tui.engine.errors import GeometryError
from destill3d_tui.engine.extract import snapshot_from_geometry
from destill3d_tui.engine.extract.features import FEATURE_COUNT
from destill3d_tui.engine.extract.preprocess import preprocess
from destill3d_tui.engine.extract.types import ExtractOptions, LoadedGeometry

OPTS = ExtractOptions(points=1024)


def _geom(mesh: trimesh.Trimesh, fmt: str = "STL") -> LoadedGeometry:
    return LoadedGeometry(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), fmt)


def test_sphere_sphericity_is_about_one() -> None:
    snap = snapshot_from_geometry(_geom(trimesh.creation.icosphere(subdivisions=4, radius=3.0)), OPTS)
    g = snap.features.global_features
    assert g[8] == pytest.approx(1.0, abs=0.01)
    assert g[9] == pytest.approx(1.0, abs=1e-3)  # convex
    assert snap.features.is_watertight


def test_cube_sphericity_is_0806() -> None:
    snap = snapshot_from_geometry(_geom(trimesh.creation.box(extents=(5, 5, 5))), OPTS)
    assert snap.features.global_features[8] == pytest.approx((np.pi ** (1 / 3)) * 6 ** (2 / 3) / 6, abs=1e-4)
    assert snap.features.global_features[8] == pytest.approx(0.806, abs=0.001)
    assert snap.features.volume == pytest.approx(125.0)
    assert snap.features.surface_area == pytest.approx(150.0)


def test_layout_of_the_32_features() -> None:
    mesh = trimesh.creation.box(extents=(4, 2, 1))
    g = snapshot_from_geometry(_geom(mesh), OPTS).features.global_features
    assert g.shape == (FEATURE_COUNT,) and g.dtype == np.float32
    assert g[0] >= g[1] >= g[2] > 0  # sorted extents
    assert g[1] / g[0] == pytest.approx(0.5, abs=0.03) and g[2] / g[0] == pytest.approx(0.25, abs=0.03)
    np.testing.assert_allclose(g[3:6], [g[1] / g[0], g[2] / g[0], g[2] / g[1]], rtol=1e-5)
    assert g[14:24].sum() == pytest.approx(1.0)
    assert g[24:27].sum() == pytest.approx(1.0) and g[24] >= g[25] >= g[26]
    assert g[27] == pytest.approx((g[24] - g[26]) / g[24], rel=1e-4)  # anisotropy
    assert g[29] > g[28]  # a long box is more linear than planar
    np.testing.assert_array_equal(g[30:32], 0.0)


def test_torus_is_not_convex_and_open_mesh_has_no_volume() -> None:
    torus = snapshot_from_geometry(_geom(trimesh.creation.torus(1.0, 0.3)), OPTS).features
    assert 0.3 < torus.global_features[9] < 0.8
    sphere = trimesh.creation.icosphere(3)
    half = sphere.submesh([sphere.triangles_center[:, 2] > 0])[0]
    open_snap = snapshot_from_geometry(_geom(half), OPTS)
    assert not open_snap.features.is_watertight and open_snap.features.quality.open
    np.testing.assert_array_equal(open_snap.features.global_features[7:10], 0.0)
    assert open_snap.features.global_features[6] > 0  # area is defined


def test_features_are_rotation_translation_and_scale_invariant() -> None:
    mesh = trimesh.creation.capsule(height=3.0, radius=0.7)
    mesh.vertices[:, 0] *= 1.6  # break the symmetry so the PCA frame matters
    base = snapshot_from_geometry(_geom(mesh), OPTS).features.global_features
    moved = mesh.copy()
    moved.apply_transform(trimesh.transformations.scale_matrix(7.5))
    rot = np.eye(4)
    rot[:3, :3] = Rotation.from_euler("xyz", [33, -71, 125], degrees=True).as_matrix()
    rot[:3, 3] = [120.0, -4.0, 9.0]
    moved.apply_transform(rot)
    other = snapshot_from_geometry(_geom(moved), OPTS).features.global_features
    np.testing.assert_allclose(other, base, atol=2e-3)


def test_point_cloud_has_no_solid_descriptors() -> None:
    pts = np.random.default_rng(0).normal(size=(5000, 3))
    snap = snapshot_from_geometry(LoadedGeometry(pts, None, "XYZ"), OPTS)
    np.testing.assert_array_equal(snap.features.global_features[6:10], 0.0)
    assert snap.features.quality.is_point_cloud and snap.geometry.point_count == 1024


def test_same_input_same_seed_gives_bit_identical_arrays() -> None:
    geom = _geom(trimesh.creation.torus(1.0, 0.3))
    a = snapshot_from_geometry(geom, OPTS)
    b = snapshot_from_geometry(geom, OPTS)
    c = snapshot_from_geometry(geom, ExtractOptions(points=1024, seed=1))
    for name in ("points", "normals", "curvature", "density"):
        assert getattr(a.geometry, name).tobytes() == getattr(b.geometry, name).tobytes()
    assert a.features.global_features.tobytes() == b.features.global_features.tobytes()
    assert not np.array_equal(a.geometry.points, c.geometry.points)
    assert a.processing.seed == 0 and c.processing.seed == 1


def test_points_are_on_the_unit_sphere_and_denormalise() -> None:
    mesh = trimesh.creation.box(extents=(10, 20, 30))
    mesh.apply_translation([100, 0, -50])
    snap = snapshot_from_geometry(_geom(mesh), OPTS)
    radius = np.linalg.norm(snap.geometry.points, axis=1)
    assert radius.max() == pytest.approx(1.0, abs=1e-6)
    original = snap.geometry.points * snap.geometry.scale + np.asarray(snap.geometry.centroid)
    assert np.all(original >= mesh.bounds[0] - 1e-3) and np.all(original <= mesh.bounds[1] + 1e-3)
    np.testing.assert_allclose(snap.features.bbox_min, mesh.bounds[0])


# ------------------------------------------------------------------ preprocessing


def test_non_finite_and_empty_inputs_are_rejected_with_reasons() -> None:
    box = trimesh.creation.box()
    bad = np.array(box.vertices)
    bad[3, 1] = np.nan
    with pytest.raises(GeometryError) as err:
        preprocess(LoadedGeometry(bad, np.asarray(box.faces), "OBJ"), OPTS)
    assert err.value.reason == "non_finite"
    with pytest.raises(GeometryError) as err:
        preprocess(LoadedGeometry(np.zeros((0, 3)), None, "XYZ"), OPTS)
    assert err.value.reason == "empty_geometry"
    with pytest.raises(GeometryError) as err:
        preprocess(LoadedGeometry(np.array(box.vertices), np.zeros((0, 3), dtype=np.int64), "STL"), OPTS)
    assert err.value.reason == "empty_geometry"
    flat = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=float)  # collinear: zero area
    with pytest.raises(GeometryError) as err:
        preprocess(LoadedGeometry(flat, np.array([[0, 1, 2]]), "STL"), OPTS)
    assert err.value.reason == "degenerate"


def test_degenerate_duplicate_and_out_of_range_faces_are_dropped_and_counted() -> None:
    box = trimesh.creation.box()
    faces = np.r_[box.faces, [[0, 0, 1], [2, 2, 2]], box.faces[:2], [[0, 1, 99]]]
    prepared = preprocess(LoadedGeometry(np.array(box.vertices), faces, "OBJ"), OPTS)
    assert len(prepared.faces) == 12
    assert prepared.quality.degenerate_share == pytest.approx(4 / 17)
    assert prepared.watertight and not prepared.quality.non_manifold
    assert any("out of range" in w for w in prepared.warnings)


def test_soup_is_welded_and_quality_flags_describe_the_mesh() -> None:
    a = trimesh.creation.box()
    b = trimesh.creation.box()
    b.apply_translation([3, 0, 0])
    both = trimesh.util.concatenate([a, b])
    tri = both.vertices[both.faces].reshape(-1, 3)
    prepared = preprocess(LoadedGeometry(tri, np.arange(len(tri)).reshape(-1, 3), "STL"), OPTS)
    assert len(prepared.vertices) == 16  # welded
    assert prepared.quality.component_count == 2 and prepared.watertight
    fin = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=float)
    nm = preprocess(LoadedGeometry(fin, np.array([[0, 1, 2], [1, 0, 3], [0, 1, 4]]), "OBJ"), OPTS)
    assert nm.quality.non_manifold and nm.quality.open and nm.quality.too_simple


def test_meshes_above_max_faces_are_simplified_and_stay_closed() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces
    opts = ExtractOptions(points=512, max_faces=4000)
    snap = snapshot_from_geometry(_geom(sphere), opts)
    assert any(t.startswith("simplified:quadric:20480->") for t in snap.processing.transforms)
    assert snap.features.is_watertight
    assert snap.features.global_features[8] == pytest.approx(1.0, abs=0.02)


def test_views_are_twelve_depth_maps_for_meshes_and_clouds() -> None:
    opts = ExtractOptions(points=512, views=True)
    mesh_views = snapshot_from_geometry(_geom(trimesh.creation.box()), opts).geometry.views
    assert mesh_views.shape == (12, 224, 224) and mesh_views.dtype == np.uint8
    assert (mesh_views > 0).mean() > 0.05 and mesh_views.max() > 128
    assert not np.array_equal(mesh_views[0], mesh_views[1])  # 30 degrees apart: a cube looks different
    pts = np.random.default_rng(0).normal(size=(3000, 3))
    cloud_views = snapshot_from_geometry(LoadedGeometry(pts, None, "XYZ"), opts).geometry.views
    assert cloud_views.shape == (12, 224, 224) and (cloud_views > 0).any()


def test_huge_but_finite_coordinates_normalise_without_overflow() -> None:
    pts = np.random.default_rng(0).random((3000, 3)) * 1e200
    snap = snapshot_from_geometry(LoadedGeometry(pts, None, "XYZ"), OPTS)
    assert np.isfinite(snap.features.global_features).all()
    assert np.linalg.norm(snap.geometry.points, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    assert 1e199 < snap.geometry.scale < 1e201


def test_single_triangle_and_tiny_clouds_are_flagged_too_simple() -> None:
    tri = LoadedGeometry(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), np.array([[0, 1, 2]]), "STL")
    snap = snapshot_from_geometry(tri, OPTS)
    assert snap.features.quality.too_simple and snap.features.quality.open
    assert snap.geometry.point_count == 1024
    two = snapshot_from_geometry(LoadedGeometry(np.array([[0, 0, 0], [1, 0, 0.0]]), None, "XYZ"), OPTS)
    assert two.features.quality.too_simple and two.geometry.point_count == 1024
    assert np.isfinite(two.geometry.normals).all() and np.isfinite(two.geometry.curvature).all()
    with pytest.raises(GeometryError) as err:
        snapshot_from_geometry(LoadedGeometry(np.zeros((5, 3)), None, "XYZ"), OPTS)
    assert err.value.reason == "degenerate"
