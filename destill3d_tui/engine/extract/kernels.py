"""Compiled inner loops (numba): hashing, union-find and pruned farthest point sampling.

numpy can only express these as sorts (O(n log n), ~15 ms for the 300K corners of a 100K-face
STL) or as a Python loop per pick (FPS); compiled, each is one pass. ``tests/unit/test_kernels.py``
checks each against a numpy or scipy formulation on random input: the same groups (numbered by
first appearance, where a sort numbered them by key), edge flags, component counts, FPS picks
(ties included), and the same spanning-tree flips where the tree is unique.

Compiled on first use (:func:`..compiled.kernel`) and cached on disk; the extraction workers call :func:`warm_up` before
their first file so no file pays the compile. The cache lives in the user's cache folder
(:func:`locations.kernel_cache_dir`; ``NUMBA_CACHE_DIR`` wins when set), never next to the
installed sources, which may be read-only. Only the first run after an install (or an
upgrade) compiles, about 20 s on one core, and says so on stderr in one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numba
import numpy as np

from .. import locations
from ..compiled import kernel

COMPILE_NOTICE = "destill3d: compiling extraction kernels (first run only, about 20 s)..."


_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive keys


@kernel
def _slot(table: np.ndarray, key: int, mask: int, shift: np.uint64) -> int:
    """Linear probing over (key, code) rows: the row holding ``key``, or the empty row where it belongs."""
    slot = np.int64((np.uint64(key) * _HASH_MULT) >> shift)
    while table[slot, 1] != -1 and table[slot, 0] != key:
        slot = (slot + 1) & mask
    return slot


@kernel
def _empty_table(bits: int) -> np.ndarray:
    table = np.empty((1 << bits, 2), dtype=np.int64)  # key and code side by side: one cache line per probe
    table[:, 1] = -1
    return table


@kernel
def first_occurrence(keys: np.ndarray, expected: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Group equal keys by first appearance.

    The hash table starts at twice ``expected`` distinct keys (or small) and doubles when half
    full, so it stays proportional to the number of distinct keys (a welded STL has a sixth as
    many vertices as corners) and in cache.

    Parameters
    ----------
    keys : (n,) int64
    expected : how many distinct keys the caller expects (0: unknown)

    Returns
    -------
    codes : (n,) int64, group of each key; groups are numbered in order of first appearance
    first : (k,) int64, index of each group's first key (increasing)
    """
    n = len(keys)
    bits = 10
    while (1 << bits) < 2 * expected:
        bits += 1
    table = _empty_table(bits)
    codes = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        key = keys[i]
        slot = _slot(table, key, (1 << bits) - 1, np.uint64(64 - bits))
        if table[slot, 1] == -1:
            table[slot, 0] = key
            table[slot, 1] = count
            first[count] = i
            count += 1
            if 2 * count > (1 << bits):  # half full: double and re-insert
                old = table
                bits += 1
                table = _empty_table(bits)
                for j in range(len(old)):
                    if old[j, 1] != -1:
                        moved = _slot(table, old[j, 0], (1 << bits) - 1, np.uint64(64 - bits))
                        table[moved, 0] = old[j, 0]
                        table[moved, 1] = old[j, 1]
            codes[i] = count - 1
        else:
            codes[i] = table[slot, 1]
    return codes, first[:count]


@kernel
def grid_keys(vertices: np.ndarray, lo: np.ndarray, step: float, bits: int) -> np.ndarray:
    """(n,) int64 cell keys ``x << 2b | y << b | z`` of ``rint((v - lo) * step)`` (numpy's rounding)."""
    out = np.empty(vertices.shape[0], dtype=np.int64)
    for i in range(vertices.shape[0]):
        x = np.int64(np.rint((vertices[i, 0] - lo[0]) * step))
        y = np.int64(np.rint((vertices[i, 1] - lo[1]) * step))
        z = np.int64(np.rint((vertices[i, 2] - lo[2]) * step))
        out[i] = (x << (2 * bits)) | (y << bits) | z
    return out


@kernel
def sorted_triple_keys(faces: np.ndarray, bits: int) -> np.ndarray:
    """(m,) int64 ``lo << 2b | mid << b | hi`` of each face's sorted vertex indices (all < 2**bits)."""
    out = np.empty(faces.shape[0], dtype=np.int64)
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        if a > b:
            a, b = b, a
        if b > c:
            b, c = c, b
        if a > b:
            a, b = b, a
        out[f] = (a << (2 * bits)) | (b << bits) | c
    return out


@kernel
def _sort_small(a: np.ndarray) -> None:
    """Sort in place: insertion sort for the few half-edges of a typical vertex, else numpy's."""
    if len(a) > 32:
        a[:] = np.sort(a)
        return
    for i in range(1, len(a)):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@kernel
def edge_flags(faces: np.ndarray, n_vertices: int) -> tuple[bool, bool, bool, bool]:
    """(watertight, non_manifold, open, winding_consistent) of a triangle mesh from its edges.

    Half-edges are bucketed by their lower vertex (a counting sort: two linear passes, no hash
    table to miss the cache on) and counted within each bucket, per direction; the mesh is
    consistently wound when no edge is traversed twice the same way.
    """
    m = faces.shape[0]
    start = np.zeros(n_vertices + 1, dtype=np.int64)
    for f in range(m):
        for c in range(3):
            a, b = faces[f, c], faces[f, (c + 1) % 3]
            start[min(a, b) + 1] += 1
    for v in range(n_vertices):
        start[v + 1] += start[v]
    fill = start[:-1].copy()
    other = np.empty(3 * m, dtype=np.int64)  # the higher vertex, times 2, plus 1 when a < b
    for f in range(m):
        for c in range(3):
            a, b = faces[f, c], faces[f, (c + 1) % 3]
            lo = min(a, b)
            other[fill[lo]] = 2 * max(a, b) + (1 if a < b else 0)
            fill[lo] += 1
    watertight, non_manifold, open_, consistent = True, False, False, True
    for v in range(n_vertices):
        bucket = other[start[v] : start[v + 1]]
        _sort_small(bucket)
        i = 0
        while i < len(bucket):
            j = i
            ahead = 0
            while j < len(bucket) and bucket[j] // 2 == bucket[i] // 2:
                ahead += bucket[j] & 1
                j += 1
            total = j - i
            watertight &= total == 2
            non_manifold |= total > 2
            open_ |= total == 1
            consistent &= ahead <= 1 and total - ahead <= 1
            i = j
    return watertight, non_manifold, open_, consistent


@kernel
def face_cross(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m, 3) cross products (v1 - v0) x (v2 - v0), the arithmetic of the numpy expression, one pass."""
    out = np.empty((faces.shape[0], 3), dtype=np.float64)
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0, z0 = vertices[a, 0], vertices[a, 1], vertices[a, 2]
        e1x, e1y, e1z = vertices[b, 0] - x0, vertices[b, 1] - y0, vertices[b, 2] - z0
        e2x, e2y, e2z = vertices[c, 0] - x0, vertices[c, 1] - y0, vertices[c, 2] - z0
        out[f, 0] = e1y * e2z - e1z * e2y
        out[f, 1] = e1z * e2x - e1x * e2z
        out[f, 2] = e1x * e2y - e1y * e2x
    return out


@kernel
def outward_scores(vertices: np.ndarray, faces: np.ndarray, cross: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per face ``cross . (v0 - reference)``: 6x the signed volume of the tetrahedron to ``reference``."""
    out = np.empty(faces.shape[0], dtype=np.float64)
    rx, ry, rz = reference[0], reference[1], reference[2]
    for f in range(faces.shape[0]):
        a = faces[f, 0]
        out[f] = (cross[f, 0] * (vertices[a, 0] - rx) + cross[f, 1] * (vertices[a, 1] - ry)
                  + cross[f, 2] * (vertices[a, 2] - rz))  # fmt: skip
    return out


@kernel
def local_covariance(points: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(n, 3, 3) covariance of each point's neighbourhood, from offsets to the point (no cancellation)."""
    n, k = neighbours.shape
    cov = np.empty((n, 3, 3))
    for i in range(n):
        s = np.zeros(3)
        ss = np.zeros((3, 3))
        for t in range(k):
            j = neighbours[i, t]
            o0, o1, o2 = points[j, 0] - points[i, 0], points[j, 1] - points[i, 1], points[j, 2] - points[i, 2]
            s[0] += o0
            s[1] += o1
            s[2] += o2
            ss[0, 0] += o0 * o0
            ss[0, 1] += o0 * o1
            ss[0, 2] += o0 * o2
            ss[1, 1] += o1 * o1
            ss[1, 2] += o1 * o2
            ss[2, 2] += o2 * o2
        for a in range(3):
            for b in range(a, 3):
                cov[i, a, b] = ss[a, b] / k - (s[a] / k) * (s[b] / k)
                cov[i, b, a] = cov[i, a, b]
    return cov


@kernel
def _before(w1: float, n1: int, w2: float, n2: int) -> bool:
    """Heap order: lighter first, then lower node index."""
    return w1 < w2 or (w1 == w2 and n1 < n2)


@kernel
def _heap_push(hw, hn, hp, size, w, node, parent):  # type: ignore[no-untyped-def]
    """Push (w, node, parent) on the binary min-heap held in hw/hn/hp[:size]; the new size."""
    pos = size
    while pos > 0:
        up = (pos - 1) // 2
        if not _before(w, node, hw[up], hn[up]):
            break
        hw[pos], hn[pos], hp[pos] = hw[up], hn[up], hp[up]
        pos = up
    hw[pos], hn[pos], hp[pos] = w, node, parent
    return size + 1


@kernel
def _heap_pop(hw, hn, hp, size):  # type: ignore[no-untyped-def]
    """Pop the lightest entry: (w, node, parent, new size)."""
    w, node, parent = hw[0], hn[0], hp[0]
    size -= 1
    lw, ln, lp = hw[size], hn[size], hp[size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and _before(hw[child + 1], hn[child + 1], hw[child], hn[child]):
            child += 1
        if not _before(hw[child], hn[child], lw, ln):
            break
        hw[pos], hn[pos], hp[pos] = hw[child], hn[child], hp[child]
        pos = child
    hw[pos], hn[pos], hp[pos] = lw, ln, lp
    return w, node, parent, size


@kernel
def propagate_orientation(normals: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hoppe's normal orientation: Prim's minimum spanning tree of the k-NN graph, flips carried along it.

    Edge weight ``1 - |n_i . n_j|`` (+1e-6), taken in both directions; each node joins the tree
    through its cheapest edge and is flipped when its normal disagrees with its parent's
    (already flipped) normal. Ties break on node index, so the result is deterministic.

    Returns
    -------
    flip : (n,) bool, labels : (n,) int64 connected component (tree) of each node
    """
    n, k = neighbours.shape
    degree = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        for t in range(k):
            j = neighbours[i, t]
            if j != i:
                degree[i + 1] += 1
                degree[j + 1] += 1
    for i in range(n):
        degree[i + 1] += degree[i]
    fill = degree[:-1].copy()
    adj = np.empty(degree[n], dtype=np.int64)
    for i in range(n):
        for t in range(k):
            j = neighbours[i, t]
            if j != i:
                adj[fill[i]] = j
                fill[i] += 1
                adj[fill[j]] = i
                fill[j] += 1
    flip = np.zeros(n, dtype=np.bool_)
    labels = np.full(n, -1, dtype=np.int64)
    cheapest = np.full(n, np.inf)
    hw = np.empty(len(adj) + n)
    hn = np.empty(len(adj) + n, dtype=np.int64)
    hp = np.empty(len(adj) + n, dtype=np.int64)
    component = 0
    for root in range(n):
        if labels[root] != -1:
            continue
        size = _heap_push(hw, hn, hp, 0, 0.0, root, -1)
        while size > 0:
            _, node, parent, size = _heap_pop(hw, hn, hp, size)
            if labels[node] != -1:
                continue
            labels[node] = component
            if parent >= 0:
                dot = normals[node, 0] * normals[parent, 0] + normals[node, 1] * normals[parent, 1]
                dot += normals[node, 2] * normals[parent, 2]
                flip[node] = flip[parent] ^ (dot < 0)
            for s in range(degree[node], degree[node + 1]):
                other = adj[s]
                if labels[other] == -1:
                    dot = normals[node, 0] * normals[other, 0] + normals[node, 1] * normals[other, 1]
                    dot += normals[node, 2] * normals[other, 2]
                    weight = 1.0 - abs(dot) + 1e-6
                    if weight < cheapest[other]:  # only an improvement can be the edge Prim takes
                        cheapest[other] = weight
                        size = _heap_push(hw, hn, hp, size, weight, other, node)
        component += 1
    return flip, labels


@kernel
def extreme_indices(points: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """For each direction (d, 3), the index of the point (n, 3) farthest along it (first on ties)."""
    d = directions.shape[0]
    best = np.full(d, -np.inf)
    out = np.zeros(d, dtype=np.int64)
    for i in range(points.shape[0]):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        for t in range(d):
            v = x * directions[t, 0] + y * directions[t, 1] + z * directions[t, 2]
            if v > best[t]:
                best[t] = v
                out[t] = i
    return out


@kernel
def _root(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


@kernel
def vertex_components(faces: np.ndarray, n_vertices: int) -> int:
    """Number of connected components of faces sharing a vertex (union-find; unused vertices ignored)."""
    parent = np.arange(n_vertices)
    used = np.zeros(n_vertices, dtype=np.bool_)
    for f in range(faces.shape[0]):
        r0 = _root(parent, faces[f, 0])
        used[faces[f, 0]] = True
        for c in range(1, 3):
            used[faces[f, c]] = True
            r = _root(parent, faces[f, c])
            if r != r0:
                parent[r] = r0
    count = 0
    for v in range(n_vertices):
        if used[v] and parent[v] == v:
            count += 1
    return count


@kernel
def _block_update(px, py, pz, orig, best, lo, hi, qx, qy, qz):  # type: ignore[no-untyped-def]
    """Lower ``best`` of the points lo..hi by their distance to q; that block's (max, lowest index at max)."""
    top = np.float32(-1.0)
    arg = -1
    for j in range(lo, hi):
        dx = px[j] - qx
        dy = py[j] - qy
        dz = pz[j] - qz
        d = (dx * dx + dy * dy) + dz * dz  # float32, the summation order of the numpy version
        if d < best[j]:
            best[j] = d
        b = best[j]
        if b > top or (b == top and orig[j] < arg):
            top = b
            arg = orig[j]
    return top, arg


@kernel
def _gap(low: float, high: float, value: float) -> float:
    """Squared distance along one axis from ``value`` to the interval [low, high]."""
    step = low - value if value < low else (value - high if value > high else 0.0)
    return step * step


@kernel
def fps_blocks(px, py, pz, orig, box, n, start, block):  # type: ignore[no-untyped-def]
    """Exact farthest point sampling over points sorted into spatially compact blocks.

    Parameters
    ----------
    px, py, pz : (m,) float32 coordinates in block order (e.g. Morton order)
    orig : (m,) int64 original index of each point (ties go to the lowest, as ``argmax`` does)
    box : (blocks, 6) float64 per-block bounding box (min xyz, max xyz)
    n : picks; start : original index of the first pick; block : points per block

    A block is skipped when the squared distance from the new pick to its box exceeds the
    block's largest current distance: no point in it can get closer. The bound is relaxed by
    1e-6 relative, above float32 rounding of the distance, so the picks equal plain FPS.
    """
    m = len(px)
    blocks = box.shape[0]
    where = np.empty(m, dtype=np.int64)
    for j in range(m):
        where[orig[j]] = j
    best = np.full(m, np.inf, dtype=np.float32)
    top = np.full(blocks, np.inf, dtype=np.float32)
    arg = np.empty(blocks, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    pick = start
    for i in range(n):
        out[i] = pick
        q = where[pick]
        qx, qy, qz = px[q], py[q], pz[q]
        for b in range(blocks):
            if top[b] != np.inf:
                gap = _gap(box[b, 0], box[b, 3], qx) + _gap(box[b, 1], box[b, 4], qy) + _gap(box[b, 2], box[b, 5], qz)
                if gap * (1.0 - 1e-6) >= top[b]:
                    continue
            lo = b * block
            top[b], arg[b] = _block_update(px, py, pz, orig, best, lo, min(lo + block, m), qx, qy, qz)
        far = 0
        for b in range(1, blocks):
            if top[b] > top[far] or (top[b] == top[far] and arg[b] < arg[far]):
                far = b
        pick = arg[far]
    return out


def farthest_points(cols: np.ndarray, n: int, start: int, block: int = 32) -> np.ndarray:
    """Farthest point sampling of (3, m) float32 coordinates: ``n`` original indices from ``start``.

    The same picks as the plain O(n * m) loop (float32 distances, ties to the lowest index),
    with blocks of ``block`` Morton-ordered points skipped when they are too far to change.
    """
    m = cols.shape[1]
    order = morton_order(cols)
    ordered = np.ascontiguousarray(cols[:, order])
    blocks = -(-m // block)
    tail = np.repeat(ordered[:, -1:], blocks * block - m, axis=1)  # pad with a point of the last block
    grid = np.concatenate([ordered, tail], axis=1).reshape(3, blocks, block)
    box = np.concatenate([grid.min(axis=2).T, grid.max(axis=2).T], axis=1).astype(np.float64)
    return fps_blocks(ordered[0], ordered[1], ordered[2], order.astype(np.int64), box, n, int(start), block)


def morton_order(cols: np.ndarray) -> np.ndarray:
    """Indices that sort (3, m) coordinates along a 10-bit-per-axis Z-order curve (stable)."""
    lo = cols.min(axis=1, keepdims=True)
    span = np.maximum(cols.max(axis=1, keepdims=True) - lo, 1e-30)
    cells = ((cols - lo) / span * 1023.0).astype(np.int64)
    code = np.zeros(cols.shape[1], dtype=np.int64)
    for bit in range(10):
        for axis in range(3):
            code |= ((cells[axis] >> bit) & 1) << (3 * bit + 2 - axis)
    return np.argsort(code, kind="stable")


def warm_up(notify: Callable[[str], None] | None = None) -> None:
    """Compile (or load from the disk cache) every kernel; the compiling run says so.

    ``notify`` gets the one-line :data:`COMPILE_NOTICE` (default: print it on stderr). Workers
    starting together take a lock, so one compiles (and notifies once) while the others wait
    and then load its cache.
    """
    cache = Path(numba.config.CACHE_DIR or locations.kernel_cache_dir())
    marker = cache / f"ready-{_build_key()}"
    with _compile_lock(cache):
        if marker.exists():
            _run_all()
            return
        if notify is None:
            print(COMPILE_NOTICE, file=sys.stderr, flush=True)
        else:
            notify(COMPILE_NOTICE)
        _run_all()
        with contextlib.suppress(OSError):  # a read-only cache folder: compile again next time
            marker.touch()


def _build_key() -> str:
    """What a compiled cache depends on: these sources (numba also goes by their time stamp),
    numba, Python and the CPU type."""
    source = Path(__file__)
    digest = hashlib.sha256(source.read_bytes())
    stamp = source.stat()
    versions = f"{numba.__version__} {sys.version} {platform.machine()}"
    digest.update(f"{stamp.st_mtime_ns} {stamp.st_size} {versions}".encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _compile_lock(cache: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``cache/.lock`` (no lock where that is impossible)."""
    try:
        import fcntl

        cache.mkdir(parents=True, exist_ok=True)
        handle = open(cache / ".lock", "a+b")  # noqa: SIM115  # held for the whole block
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # closing releases the lock


def _run_all() -> None:
    """Call every kernel once on a tiny input."""
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]], dtype=np.int64)
    first_occurrence(faces.ravel())
    edge_flags(faces, 4)
    vertex_components(faces, 4)
    corners = np.eye(4, 3)
    outward_scores(corners, faces, face_cross(corners, faces), np.zeros(3))
    farthest_points(np.random.default_rng(0).random((3, 100)).astype(np.float32), 8, 0)
    near = np.array([[0, 1], [1, 0], [2, 3], [3, 2]], dtype=np.int64)
    local_covariance(corners, near)
    extreme_indices(corners, np.eye(3))
    propagate_orientation(corners, near)
