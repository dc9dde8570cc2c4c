"""The compiled kernels give the results of the plain numpy formulations they replace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse import csgraph

from destill3d_tui.engine import locations
from destill3d_tui.engine.extract import kernels


def plain_fps(cols: np.ndarray, n: int, start: int) -> np.ndarray:
    """The O(n * m) loop: float32 distances summed (x + y) + z, ties to the lowest index."""
    best = np.full(cols.shape[1], np.inf, dtype=np.float32)
    out, idx = [], start
    for _ in range(n):
        out.append(idx)
        d = (cols - cols[:, idx : idx + 1]) ** 2
        best = np.minimum(best, (d[0] + d[1]) + d[2])
        idx = int(best.argmax())
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_first_occurrence_numbers_groups_by_first_appearance(seed: int) -> None:
    keys = np.random.default_rng(seed).integers(-50, 50, 2000) * (1 << 40)  # large, negative and repeated
    codes, first = kernels.first_occurrence(keys)
    uniq, idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(idx)] = np.arange(len(uniq))
    np.testing.assert_array_equal(first, np.sort(idx))
    np.testing.assert_array_equal(codes, rank[inverse])


def test_edge_flags_of_closed_open_and_non_manifold_meshes() -> None:
    tetra = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    assert kernels.edge_flags(tetra, 4) == (True, False, False, True)
    assert kernels.edge_flags(tetra[:3], 4) == (False, False, True, True)
    flipped = tetra.copy()
    flipped[0] = flipped[0, ::-1]
    assert kernels.edge_flags(flipped, 4) == (True, False, False, False)
    fin = np.vstack([tetra, [[0, 1, 4]]])  # a third face on edge 0-1
    watertight, non_manifold, open_, _ = kernels.edge_flags(fin, 5)
    assert (watertight, non_manifold, open_) == (False, True, True)


@pytest.mark.parametrize("seed", range(3))
def test_vertex_components_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 3000, (800, 3))  # sparse: many components, unused vertices
    rows, cols = np.r_[faces[:, 0], faces[:, 1]], np.r_[faces[:, 1], faces[:, 2]]
    graph = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(3000, 3000))
    count, _ = csgraph.connected_components(graph, directed=False)
    unused = 3000 - len(np.unique(faces))
    assert kernels.vertex_components(faces, 3000) == count - unused


@pytest.mark.parametrize(("seed", "grid"), [(0, 0), (1, 0), (2, 8), (3, 2)])
def test_pruned_fps_equals_the_plain_loop(seed: int, grid: int) -> None:
    pts = np.random.default_rng(seed).normal(size=(3, 3000)).astype(np.float32)
    if grid:  # coarse grids make many equal distances: ties must go to the lowest index
        pts = np.round(pts * grid) / grid
    for block in (16, 64):
        np.testing.assert_array_equal(kernels.farthest_points(pts, 500, 7, block), plain_fps(pts, 500, 7))


def test_grid_keys_round_like_numpy() -> None:
    pts = np.random.default_rng(5).random((5000, 3)) * 7.0 - 3.0
    pts[:10] = np.round(pts[:10] * 4) / 4  # exact half-cells: numpy rounds half to even
    lo = pts.min(axis=0)
    cells = np.rint((pts - lo) * 4.0).astype(np.int64)
    expected = (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]
    np.testing.assert_array_equal(kernels.grid_keys(pts, lo, 4.0, 21), expected)


def test_sorted_triple_keys_ignore_corner_order() -> None:
    faces = np.random.default_rng(6).integers(0, 1 << 21, (3000, 3))
    ordered = np.sort(faces, axis=1)
    expected = (ordered[:, 0] << 42) | (ordered[:, 1] << 21) | ordered[:, 2]
    np.testing.assert_array_equal(kernels.sorted_triple_keys(faces[:, ::-1].copy(), 21), expected)



def test_prim_orientation_matches_the_scipy_spanning_tree() -> None:
    """Distinct weights make the minimum spanning tree unique: Prim's flips equal Kruskal's."""
    from scipy.spatial import cKDTree

    from destill3d_tui.engine.extract.topology import tree_parity

    rng = np.random.default_rng(8)
    pts = rng.normal(size=(600, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    normals = pts * rng.choice([-1.0, 1.0], (600, 1)) + rng.normal(scale=0.05, size=(600, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    _, nbr = cKDTree(pts).query(pts, k=11)
    flip, labels = kernels.propagate_orientation(normals, nbr)
    i, j = np.repeat(np.arange(600), 10), nbr[:, 1:].ravel()
    weight = 1.0 - np.abs(np.einsum("ij,ij->i", normals[i], normals[j])) + 1e-6
    mst = csgraph.minimum_spanning_tree(sparse.csr_matrix((weight, (i, j)), shape=(600, 600))).tocoo()
    parity, ref_labels = tree_parity(600, mst.row.astype(np.int64), mst.col.astype(np.int64),
                                     lambda a, b: np.einsum("ij,ij->i", normals[a], normals[b]) < 0)  # fmt: skip
    assert len(np.unique(labels)) == len(np.unique(ref_labels))
    for part in np.unique(labels):  # a whole tree may be flipped relative to the other: compare per part
        members = labels == part
        agree = flip[members] == parity[members]
        assert agree.all() or (~agree).all()
    oriented = np.where(flip[:, None], -normals, normals)
    assert abs(np.sign(np.einsum("ij,ij->i", oriented, pts)).sum()) == 600  # one consistent side


def test_extreme_indices_match_argmax() -> None:
    pts = np.random.default_rng(9).normal(size=(4000, 3))
    dirs = np.random.default_rng(10).normal(size=(26, 3))
    np.testing.assert_array_equal(kernels.extreme_indices(pts, dirs), (pts @ dirs.T).argmax(axis=0))


WARM = (
    "import sys, time\n"
    "from destill3d_tui.engine.extract import kernels\n"
    "t = time.monotonic()\n"
    "kernels.warm_up()\n"
    "stats = kernels.first_occurrence.stats\n"
    "print(stats.cache_path, sum(stats.cache_hits.values()), round(time.monotonic() - t, 1))\n"
)


def test_kernels_compile_once_into_the_cache_dir_and_say_so(tmp_path: Path) -> None:
    """First run on an empty cache: two workers start together, one compiles, stderr says so once."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "DESTILL3D_HOME": str(tmp_path / "home")}
    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
    (tmp_path / "in").mkdir()
    for name in ("stl/unit_cube.STL", "off/Cube.off"):
        shutil.copy(corpus / name, tmp_path / "in")
    first = subprocess.run([sys.executable, "-m", "destill3d_tui", "extract", "dir", str(tmp_path / "in"),
                            "--output-dir", str(tmp_path / "out"), "--workers", "2", "--points", "256"],
                           env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stderr.count(kernels.COMPILE_NOTICE) == 1, first.stderr
    again = subprocess.run([sys.executable, "-c", WARM], env=env, capture_output=True, text=True, timeout=120)
    assert kernels.COMPILE_NOTICE not in again.stderr
    cache_path, hits, _ = again.stdout.split()
    assert cache_path.startswith(str(tmp_path / "cache")) and int(hits) > 0  # loaded, not compiled


def test_kernel_cache_is_in_the_user_cache_dir_not_beside_the_sources() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        pytest.skip("NUMBA_CACHE_DIR chooses the folder")
    cache_path = Path(kernels.first_occurrence.stats.cache_path)
    assert cache_path.is_relative_to(locations.kernel_cache_dir())
    assert not cache_path.is_relative_to(Path(kernels.__file__).parent)
