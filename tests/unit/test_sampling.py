"""Sampling: exactly N points for every strategy, on the surface, seeded, spread out."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from destill3d_tui.engine.extract.sampling import STRATEGIES, farthest_point_indices, poisson_indices, sample

N = 512


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=3, radius=2.0)


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    rng = np.random.default_rng(7)
    pts = rng.normal(size=(6000, 3))
    return 3.0 * pts / np.linalg.norm(pts, axis=1, keepdims=True)


def _spacing(points: np.ndarray) -> np.ndarray:
    d, _ = cKDTree(points).query(points, k=2)
    return d[:, 1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_mesh_gives_exactly_n_points_on_the_surface(sphere: trimesh.Trimesh, strategy: str) -> None:
    s = sample(sphere.vertices, sphere.faces, N, strategy, seed=3)
    assert s.points.shape == (N, 3)
    assert s.source.shape == (N,)
    assert s.padded == 0
    # every point lies on the face it names: distance to that face's plane is ~0
    normals = sphere.face_normals[s.source]
    offset = np.einsum("ij,ij->i", s.points - sphere.vertices[sphere.faces[s.source, 0]], normals)
    assert np.abs(offset).max() < 1e-9
    radius = np.linalg.norm(s.points, axis=1)
    assert radius.max() <= 2.0 + 1e-9 and radius.min() > 1.9


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cloud_gives_exactly_n_of_its_points(cloud: np.ndarray, strategy: str) -> None:
    s = sample(cloud, None, N, strategy, seed=1)
    assert s.points.shape == (N, 3)
    np.testing.assert_array_equal(s.points, cloud[s.source])
    if strategy != "voxel":
        assert len(np.unique(s.source)) == N  # no repeats when the cloud is large enough


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_small_cloud_is_padded_by_resampling(strategy: str) -> None:
    pts = np.random.default_rng(0).random((10, 3))
    s = sample(pts, None, N, strategy, seed=5)
    assert s.points.shape == (N, 3)
    assert s.padded == N - 10
    assert set(np.unique(s.source)) == set(range(10))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_points_other_seed_other_points(sphere: trimesh.Trimesh, strategy: str) -> None:
    a = sample(sphere.vertices, sphere.faces, N, strategy, seed=11)
    b = sample(sphere.vertices, sphere.faces, N, strategy, seed=11)
    c = sample(sphere.vertices, sphere.faces, N, strategy, seed=12)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)


def test_hybrid_spreads_points_better_than_uniform(sphere: trimesh.Trimesh) -> None:
    uniform = sample(sphere.vertices, sphere.faces, N, "uniform", seed=0)
    hybrid = sample(sphere.vertices, sphere.faces, N, "hybrid", seed=0)
    poisson = sample(sphere.vertices, sphere.faces, N, "poisson", seed=0)
    assert _spacing(hybrid.points).min() > 3 * _spacing(uniform.points).min()
    assert _spacing(poisson.points).min() > 3 * _spacing(uniform.points).min()


def test_fps_matches_a_reference_implementation() -> None:
    pts = np.random.default_rng(2).random((400, 3))
    chosen = [0]
    best = np.linalg.norm(pts - pts[0], axis=1)
    for _ in range(49):
        nxt = int(best.argmax())
        chosen.append(nxt)
        best = np.minimum(best, np.linalg.norm(pts - pts[nxt], axis=1))
    np.testing.assert_array_equal(farthest_point_indices(pts, 50), chosen)


def test_poisson_elimination_keeps_exactly_n() -> None:
    pts = np.random.default_rng(4).random((3000, 3))
    idx = poisson_indices(pts, 700)
    assert len(idx) == 700 and len(np.unique(idx)) == 700


def test_bad_arguments_are_refused(sphere: trimesh.Trimesh) -> None:
    with pytest.raises(ValueError, match="strategy"):
        sample(sphere.vertices, sphere.faces, N, "random")
    with pytest.raises(ValueError):
        sample(sphere.vertices, sphere.faces, 0)
