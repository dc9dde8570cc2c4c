"""Near-duplicates: the same object uploaded twice, rescaled, rotated or re-tessellated.

Two signals:

- **exact**: the same source file (``snapshots.original_file_hash``, SHA-256);
- **geometric**: a rotation-, scale- and tessellation-invariant shape descriptor of the stored
  points (:func:`shape_descriptor`: D2 shape distribution, radial distribution and PCA
  eigenvalue shares, Hellinger-mapped and centred on a fixed reference of primitives), compared
  by cosine similarity through a derived FAISS index (``geometric`` space, see :mod:`.index`).
  When both objects also carry an embedding from the same classifier, it must agree too
  (cosine >= threshold - :data:`EMBEDDING_SLACK`), which keeps different parts with look-alike
  distance statistics (two plain boxes of other proportions) apart.

Decision: the geometric descriptor is derived data and is *not* written to the ``embeddings``
table. That table has one row per snapshot, which belongs to the classifier's embedding; the
descriptor is a pure function of the stored points, so it lives in its own reconciled index
file beside the embedding indexes and is recomputed from the snapshots when that file is stale.
Similarity search uses the classifier embedding when the query has one, else this space.

The pipeline may skip storing a near-duplicate (``pipeline.skip_near_duplicates``): the writer
calls :func:`is_near_duplicate` before its transaction.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial.distance import pdist

from .. import locations
from ..config import IndexSettings, Settings
from .index import EmbeddingIndex, in_chunks
from .service import HASH_MATCH
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .db import Store

D2_BINS, D2_RANGE = 24, 4.0  # pair distances in units of the RMS radius
RADIAL_BINS, RADIAL_RANGE = 12, 2.5
RADIAL_WEIGHT = 0.7  # the radial histogram repeats part of D2's information: weigh it less
DESCRIPTOR_POINTS = 1024
"""Points used for D2 (every other one of 2048): 0.5M pairs, about 5 ms per object."""
EMBEDDING_SLACK = 0.15
GEOMETRIC_SPACE = "geometric"
DESCRIPTOR_VERSION = "d2r-1"


# ---------------------------------------------------------------- the descriptor


def _raw_descriptor(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    p = p - p.mean(axis=0)
    rms = np.sqrt((p**2).sum(axis=1).mean())
    p = p / rms if rms > 0 else p
    stride = max(1, len(p) // DESCRIPTOR_POINTS)
    d2, _ = np.histogram(pdist(p[::stride]), bins=D2_BINS, range=(0.0, D2_RANGE))
    radial, _ = np.histogram(np.linalg.norm(p, axis=1), bins=RADIAL_BINS, range=(0.0, RADIAL_RANGE))
    eig = np.sort(np.linalg.eigvalsh(np.cov(p.T)))[::-1] if len(p) > 3 else np.zeros(3)
    eig = eig / eig.sum() if eig.sum() > 0 else eig
    return np.concatenate(
        [np.sqrt(d2 / max(d2.sum(), 1)), RADIAL_WEIGHT * np.sqrt(radial / max(radial.sum(), 1)), eig]
    )


@functools.lru_cache(maxsize=1)
def _reference() -> np.ndarray:
    """Mean raw descriptor of a few primitives: subtracting it spreads cosine similarities."""
    import trimesh

    shapes = [
        trimesh.creation.icosphere(3),
        trimesh.creation.box(),
        trimesh.creation.cylinder(0.5, 2.0),
        trimesh.creation.torus(1.0, 0.3),
        trimesh.creation.capsule(1.0, 0.4),
        trimesh.creation.box((3.0, 1.0, 0.2)),
    ]
    raws = [_raw_descriptor(trimesh.sample.sample_surface(s, 2048, seed=0)[0]) for s in shapes]
    return np.mean(raws, axis=0)


def shape_descriptor(points: np.ndarray) -> np.ndarray:
    """Rotation/scale/tessellation-invariant descriptor of a point cloud.

    Parameters
    ----------
    points : (n, 3) float

    Returns
    -------
    (39,) float32, compare by cosine similarity (copies score about 0.97-1.0)
    """
    return (_raw_descriptor(points) - _reference()).astype(np.float32)


# ---------------------------------------------------------------- the geometric space as a source


def database_key(store: Store) -> str:
    """Index files of different databases never mix: a short hash of the database URL."""
    return hashlib.sha256(store.url.encode()).hexdigest()[:12]


class GeometricSource:
    """Shape descriptors of every stored snapshot, computed from ``snapshot_data``."""

    def __init__(self, store: Store):
        self.store = store
        self.name = f"{database_key(store)}-{GEOMETRIC_SPACE}-{DESCRIPTOR_VERSION}"

    def fingerprint(self) -> str:
        """Newest ``processed_at``; deletions are caught by hit checks.

        Cheap because schema v3 (migrations.py) has the covering index ``idx_snapshots_id_processed``.
        """
        return str(self.store.execute("SELECT MAX(processed_at) FROM snapshots").fetchone()[0])

    def existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in in_chunks(ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT snapshot_id FROM snapshots WHERE snapshot_id IN ({marks})"
            found.update(r[0] for r in self.store.execute(sql, tuple(chunk)).fetchall())
        return found

    def versions(self) -> dict[str, str]:
        cursor = self.store.execute("SELECT snapshot_id, processed_at FROM snapshots")
        return {sid: str(at) for sid, at in cursor.fetchall()}

    def vectors(self, ids: list[str]) -> np.ndarray:
        found: dict[str, np.ndarray] = {}
        for chunk in in_chunks(ids, 64):
            marks = ",".join("?" * len(chunk))
            rows = self.store.execute(
                f"SELECT snapshot_id, snapshot_data FROM snapshots WHERE snapshot_id IN ({marks})", tuple(chunk)
            ).fetchall()
            for sid, blob in rows:
                found[sid] = shape_descriptor(Snapshot.from_bytes(bytes(blob)).geometry.points)
        zero = np.zeros(D2_BINS + RADIAL_BINS + 3, np.float32)
        return np.stack([found.get(i, zero) for i in ids])


_INDEXES: dict[tuple[str, str], EmbeddingIndex] = {}
_INDEXES_LOCK = threading.Lock()


def geometric_index(store: Store, settings: IndexSettings | None = None) -> EmbeddingIndex:
    """The (process-wide, reconciled) geometric index of ``store``."""
    source = GeometricSource(store)
    key = (store.url, str(locations.index_dir()))
    with _INDEXES_LOCK:
        index = _INDEXES.get(key)
        if index is None:
            index = EmbeddingIndex(locations.index_dir(), source, settings)
            index.open()
            _INDEXES[key] = index
        else:
            index.source = source  # the caller's store: its connection belongs to this thread
    return index


# ---------------------------------------------------------------- ingest check


def is_near_duplicate(snapshot: Snapshot, store: Store, settings: Settings | None = None) -> str | None:
    """The snapshot_id of a stored object ``snapshot`` duplicates, or None.

    Exact first (same source SHA-256), then geometric (descriptor cosine >=
    ``pipeline.near_duplicate_threshold``). Call it before storing when
    ``pipeline.skip_near_duplicates`` is on.
    """
    settings = settings or Settings()
    sha = snapshot.provenance.original_file_hash
    if sha:
        row = store.execute(
            f"SELECT snapshot_id FROM snapshots WHERE {HASH_MATCH} AND snapshot_id <> ? LIMIT 1",
            (sha, snapshot.snapshot_id),
        ).fetchone()
        if row:
            return str(row[0])
    index = geometric_index(store, settings.index)
    hits = index.search(shape_descriptor(snapshot.geometry.points), k=2)[0]
    threshold = settings.pipeline.near_duplicate_threshold
    for sid, score in hits:
        if sid != snapshot.snapshot_id and score >= threshold:
            return sid
    return None


# ---------------------------------------------------------------- clusters


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def exact_pairs(store: Store) -> Iterable[tuple[str, str]]:
    rows = store.execute(
        "SELECT original_file_hash, snapshot_id FROM snapshots WHERE original_file_hash IS NOT NULL "
        "AND original_file_hash <> '' ORDER BY original_file_hash"
    ).fetchall()
    first: dict[str, str] = {}
    for sha, sid in rows:
        if sha in first:
            yield first[sha], sid
        else:
            first[sha] = sid


def _embedding_models(store: Store) -> dict[str, str]:
    return dict(store.execute("SELECT snapshot_id, model_id FROM embeddings").fetchall())


def find_clusters(
    store: Store,
    threshold: float = 0.98,
    settings: Settings | None = None,
    embedding_index: Any = None,
    neighbours: int = 10,
) -> list[list[str]]:
    """Groups of snapshot ids that are the same object, largest first, oldest member first.

    ``embedding_index(model_id) -> EmbeddingIndex`` gives classifier indexes for confirmation.
    """
    settings = settings or Settings()
    uf = _UnionFind()
    for a, b in exact_pairs(store):
        uf.union(a, b)
    geo = geometric_index(store, settings.index)
    models = _embedding_models(store) if embedding_index else {}
    ids = geo.ids()
    for chunk in in_chunks(ids, 1024):
        queries = np.stack([geo.vector(i) for i in chunk])
        for sid, hits in zip(chunk, geo.search(queries, k=neighbours), strict=True):
            for other, score in hits:
                if other != sid and score >= threshold and _confirmed(sid, other, threshold, models, embedding_index):
                    uf.union(sid, other)
    return _groups(store, uf)


def _confirmed(a: str, b: str, threshold: float, models: dict[str, str], embedding_index: Any) -> bool:
    model = models.get(a)
    if not model or model != models.get(b):
        return True
    index = embedding_index(model)
    va, vb = index.vector(a), index.vector(b)
    return va is None or vb is None or float(va @ vb) >= threshold - EMBEDDING_SLACK


def _groups(store: Store, uf: _UnionFind) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for sid in uf.parent:
        groups.setdefault(uf.find(sid), []).append(sid)
    clusters = [g for g in groups.values() if len(g) > 1]
    if not clusters:
        return []
    order = {sid: str(at) for sid, at in store.execute("SELECT snapshot_id, processed_at FROM snapshots").fetchall()}
    clusters = [sorted(g, key=lambda s: (order.get(s, ""), s)) for g in clusters]
    return sorted(clusters, key=lambda g: (-len(g), g[0]))
