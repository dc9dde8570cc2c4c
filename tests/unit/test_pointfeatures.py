"""Per-point normals, curvature and density."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from destill3d_tui.engine.extract import snapshot_from_geometry
from destill3d_tui.engine.extract.pointfeatures import compute_point_features, symmetric_eig3
from destill3d_tui.engine.extract.types import LoadedGeometry


def _sphere_cloud(n: int = 2048, seed: int = 0) -> np.ndarray:
    pts = np.random.default_rng(seed).normal(size=(n, 3))
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def test_normals_are_unit_and_outward_on_a_sphere_cloud() -> None:
    pts = _sphere_cloud()
    pf = compute_point_features(pts)
    assert pf.normals.dtype == np.float32 and pf.normals.shape == (2048, 3)
    np.testing.assert_allclose(np.linalg.norm(pf.normals, axis=1), 1.0, atol=1e-5)
    radial = np.einsum("ij,ij->i", pf.normals, pts)
    assert (radial > 0.9).mean() > 0.99  # parallel to the radius and pointing out


def test_orientation_is_consistent_on_a_non_convex_cloud() -> None:
    torus = trimesh.creation.torus(1.0, 0.35, major_sections=64, minor_sections=32)
    pts, faces = trimesh.sample.sample_surface_even(torus, 3000, seed=1)
    pf = compute_point_features(pts)
    agree = np.einsum("ij,ij->i", pf.normals, torus.face_normals[faces])
    assert (agree > 0.8).mean() > 0.97


def test_plane_has_zero_curvature_and_vertical_normals() -> None:
    pts = np.random.default_rng(3).random((2048, 3))
    pts[:, 2] = 0.25
    pf = compute_point_features(pts)
    assert pf.curvature.max() < 1e-6
    np.testing.assert_allclose(np.abs(pf.normals[:, 2]), 1.0, atol=1e-5)


def test_curvature_is_higher_at_cube_corners_and_bounded() -> None:
    pts = trimesh.sample.sample_surface_even(trimesh.creation.box(), 3000, seed=2)[0]
    pf = compute_point_features(pts)
    assert pf.curvature.min() >= 0 and pf.curvature.max() <= 1 / 3 + 1e-6
    corner = np.abs(pts).min(axis=1) > 0.4  # near three faces at once
    flat = np.sort(np.abs(pts), axis=1)[:, 1] < 0.3  # inside one face
    assert pf.curvature[corner].mean() > 10 * pf.curvature[flat].mean()


def test_density_is_in_unit_interval_and_follows_crowding() -> None:
    rng = np.random.default_rng(5)
    pts = np.r_[rng.random((1024, 3)) * 0.1, rng.random((1024, 3)) + 2.0]
    pf = compute_point_features(pts)
    assert pf.density.max() == pytest.approx(1.0) and pf.density.min() > 0
    assert pf.density[:1024].mean() > 5 * pf.density[1024:].mean()


def test_given_normals_are_kept_and_normalised() -> None:
    pts = _sphere_cloud(512)
    given = -3.0 * pts
    pf = compute_point_features(pts, given)
    np.testing.assert_allclose(pf.normals, -pts, atol=1e-6)


def test_closed_eigen_solver_matches_lapack_including_degenerate_cases() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2000, 3, 3))
    cov = a @ a.transpose(0, 2, 1)
    cov[:300, :, 2] *= 1e-5
    cov[:300, 2, :] *= 1e-5  # nearly planar
    cov[300:350] = np.eye(3)  # isotropic
    cov[350:400] = 0.0  # collapsed
    v = rng.normal(size=(50, 3))
    cov[400:450] = v[:, :, None] * v[:, None, :]  # rank one
    values, vectors = symmetric_eig3(cov)
    ref = np.linalg.eigvalsh(cov)
    np.testing.assert_allclose(values, ref, atol=1e-8 * np.abs(ref).max())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-12)
    residual = np.linalg.norm(np.einsum("nij,nj->ni", cov, vectors) - values[:, :1] * vectors, axis=1)
    assert residual.max() < 1e-6


@pytest.mark.parametrize("name", ["box", "torus", "capsule"])
def test_mesh_normals_point_outward_even_with_scrambled_winding(name: str) -> None:
    mesh = {
        "box": trimesh.creation.box(extents=(2, 1, 0.5)),
        "torus": trimesh.creation.torus(1.0, 0.3),
        "capsule": trimesh.creation.capsule(height=2.0, radius=0.5),
    }[name]
    rng = np.random.default_rng(0)
    tri = mesh.vertices[mesh.faces]
    flip = rng.random(len(tri)) < 0.4
    tri[flip] = tri[flip][:, ::-1]  # a soup with inconsistent winding, like a careless STL
    geom = LoadedGeometry(tri.reshape(-1, 3), np.arange(3 * len(tri)).reshape(-1, 3), "STL")
    snap = snapshot_from_geometry(geom)
    points = snap.geometry.points * snap.geometry.scale + np.asarray(snap.geometry.centroid)
    _, _, face = trimesh.proximity.closest_point(mesh, points)
    agree = np.einsum("ij,ij->i", snap.geometry.normals, mesh.face_normals[face])
    assert (agree > 0.99).mean() > 0.97
    assert snap.features.is_watertight
