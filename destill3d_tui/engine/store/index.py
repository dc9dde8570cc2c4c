"""The similarity index: FAISS over L2-normalised vectors, derived from the database.

The database is the truth; the index is a cache of it. The writer never calls the index: it
commits rows to the ``embeddings`` table and that is all. Whoever opens or queries the index
reconciles it with its :class:`VectorSource` first:

- before each query (and on :meth:`EmbeddingIndex.open` of a saved file) a cheap fingerprint of
  the source (its newest version stamp, an indexed ``MAX``) is compared with the index's; when
  it moved, only the rows stamped at or after the old fingerprint are read (an index range,
  O(new rows)) and added: the index grows with the data instead of being diffed or rebuilt.
  The source's row count (an index-only ``COUNT``) must then equal the index's; if it does not
  (rows were deleted), or the source cannot list new rows, the full ``id -> version`` map is
  compared (added, removed and changed ids are patched in, or the index is rebuilt when the
  change is large or the file is unreadable);
- after each query the hits are checked to still exist (primary-key lookups of k ids): a
  deleted row, which does not move the fingerprint, is marked deleted and the search repeated.
- :meth:`EmbeddingIndex.rebuild` builds it anew from the source (``db index rebuild``), a
  maintenance step: nothing needs it for correctness.

So a crash between the database commit and the index write (or during the index write) leaves
a file whose fingerprint no longer matches the database, and the next reader patches it: a
stale file is never trusted. The file is written to ``<name>.part`` and renamed into place, so
it is either the old complete index or the new complete one.

Small collections use an exact ``IndexFlatIP``; above ``IndexSettings.hnsw_threshold`` vectors
an ``IndexHNSWFlat`` (inner product) answers in well under a millisecond. HNSW cannot delete,
so removed ids become tombstones that searches skip, and the index is rebuilt once tombstones
exceed :data:`MAX_TOMBSTONE_SHARE` of it.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import faiss
import numpy as np

from .. import crashpoints
from ..config import IndexSettings

MAGIC = b"D3DIDX1\n"
MAX_TOMBSTONE_SHARE = 0.10
"""Rebuild an HNSW index once this share of its entries are deleted: searches over-fetch by
the tombstone count, which stops being cheap beyond this."""
TRAIN_PER_LIST, TRAIN_MIN = 40, 65_536
"""IVF-PQ training vectors: 40 per inverted list (faiss's k-means wants >= 39), at least 2^16 for the PQ codebooks."""
PATCH_LIMIT_SHARE = 0.5
"""Rebuild instead of patching when more than this share of the index would change."""
FETCH_CHUNK = 2048
"""Vectors read from the source per round trip while (re)building."""
SMALL_BATCH = 64
"""Below this many queries a search runs on one thread."""
_DEFAULT_THREADS = faiss.omp_get_max_threads()
SAVE_EVERY_S = 30.0
"""Patches are written back at most this often: the file is only a head start that is never
trusted, and rewriting a 400 MB index after every new embedding would cost more than the patch."""


class VectorSource(Protocol):
    """Where an index's vectors come from (a database table, descriptors of stored snapshots)."""

    name: str  # file-name-safe, unique per database and vector space

    def fingerprint(self) -> str:
        """A cheap summary (O(log n)) that changes whenever rows are added or replaced."""

    def versions(self) -> dict[str, str]:
        """snapshot_id -> version stamp of its vector, for every row."""

    def vectors(self, ids: list[str]) -> np.ndarray:
        """(len(ids), d) float32 vectors of ``ids`` in that order (not yet normalised)."""

    def existing(self, ids: list[str]) -> set[str]:
        """The subset of ``ids`` still present."""


@runtime_checkable
class GrowingSource(VectorSource, Protocol):
    """A source that can list what changed since a fingerprint (the embeddings table can)."""

    def since(self, fingerprint: str) -> dict[str, str]:
        """snapshot_id -> version of the rows stamped at or after ``fingerprint``."""

    def count(self) -> int:
        """How many rows the source holds."""


CRASH_EXIT = 86  # the exit status of a crash point in the index writer (crashpoints; tests/dataset/test_index.py)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; zero rows stay zero. (n, d) -> (n, d) float32, contiguous."""
    out = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(vectors), -1).copy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


@dataclass
class ReconcileReport:
    added: int = 0
    removed: int = 0
    rebuilt: bool = False
    unchanged: bool = False


class EmbeddingIndex:
    """A persisted FAISS index over one vector space, kept equal to its source.

    Parameters
    ----------
    directory : folder holding ``<source.name>.faissidx`` (created on first save)
    source : the table or derivation the vectors come from
    settings : HNSW threshold, M and efSearch
    """

    def __init__(self, directory: Path, source: VectorSource, settings: IndexSettings | None = None):
        self.directory = Path(directory)
        self.source = source
        self.settings = settings or IndexSettings()
        self.path = self.directory / f"{source.name}.faissidx"
        self._lock = threading.RLock()
        self._dirty = False
        self._saved_at = float("-inf")
        self._reset(dim=0)

    # ------------------------------------------------------------------ state

    def _reset(self, dim: int) -> None:
        self.dim = dim
        self.kind = "flat"
        self._index: faiss.Index | None = None
        self._ids: list[str | None] = []  # faiss label -> snapshot_id (None: tombstone)
        self._label: dict[str, int] = {}
        self._versions: dict[str, str] = {}
        self._fingerprint = ""
        self._tombstones = 0

    def __len__(self) -> int:
        return len(self._label)

    def __contains__(self, snapshot_id: str) -> bool:
        return snapshot_id in self._label

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def _wanted_kind(self, count: int) -> str:
        if count >= self.settings.compress_above:
            return "ivfpq"
        return "hnsw" if count >= self.settings.hnsw_threshold else "flat"

    def _new_faiss(self, dim: int, count: int, sample: np.ndarray | None = None) -> faiss.Index:
        """An empty index for ``count`` vectors; IVF-PQ is trained on ``sample`` (normalised rows) first."""
        if self._wanted_kind(count) == "ivfpq" and sample is not None:
            self.kind = "ivfpq"
            return faiss.IndexIDMap2(self._trained_ivfpq(dim, count, sample))
        if count >= self.settings.hnsw_threshold:
            inner = faiss.IndexHNSWFlat(dim, self.settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.settings.ef_search
            self.kind = "hnsw"
        else:
            inner = faiss.IndexFlatIP(dim)
            self.kind = "flat"
        return faiss.IndexIDMap2(inner)

    def _trained_ivfpq(self, dim: int, count: int, sample: np.ndarray) -> faiss.Index:
        """IVF (about 4 sqrt(n) lists) over 8-bit PQ codes of at most 64 bytes, trained on ``sample``."""
        nlist = max(1, min(int(4 * np.sqrt(count)), len(sample) // 39))
        codes = max(m for m in range(1, min(64, dim) + 1) if dim % m == 0)
        ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, codes, 8, faiss.METRIC_INNER_PRODUCT)
        ivf.train(sample)
        ivf.nprobe = self.settings.nprobe
        return ivf

    def _training_sample(self, ids: list[str]) -> np.ndarray:
        """Normalised vectors of a seeded random subset of ``ids``: enough for k-means over ~4 sqrt(n) lists."""
        want = min(len(ids), max(TRAIN_MIN, TRAIN_PER_LIST * int(4 * np.sqrt(len(ids)))))
        chosen = np.random.default_rng(0).choice(len(ids), want, replace=False)
        picked = [ids[i] for i in sorted(chosen)]
        return np.concatenate([normalise(self.source.vectors(picked[s : s + FETCH_CHUNK]))
                               for s in range(0, len(picked), FETCH_CHUNK)])  # fmt: skip

    # ------------------------------------------------------------------ open / reconcile

    def open(self) -> ReconcileReport:
        """Load the saved file if it is readable, then bring it up to date with the source."""
        with self._lock:
            if not self._load():
                self._reset(dim=0)
                return self._full_reconcile(self.source.fingerprint())
            return self._reconcile(self.source.fingerprint(), counted=True)

    def reconcile(self) -> ReconcileReport:
        """Bring the index up to date if the source's fingerprint moved (cheap when it did not)."""
        with self._lock:
            current = self.source.fingerprint()
            if current == self._fingerprint and self._index is not None:
                return ReconcileReport(unchanged=True)
            return self._reconcile(current)

    def rebuild(self) -> ReconcileReport:
        """Build the index anew from the source and save it (maintenance: drops tombstones, re-picks the kind)."""
        with self._lock:
            fingerprint = self.source.fingerprint()
            truth = self.source.versions()
            self._rebuild(truth)
            self._fingerprint = fingerprint
            self.save()
            return ReconcileReport(added=len(truth), rebuilt=True)

    def _reconcile(self, fingerprint: str, counted: bool = False) -> ReconcileReport:
        """Only the rows new since the last fingerprint when the source can list them, else the full diff.

        ``counted``: check the row count even when the fingerprint did not move (a saved file
        may predate deletions).
        """
        if self._index is None or not isinstance(self.source, GrowingSource) or not self._fingerprint:
            return self._full_reconcile(fingerprint)
        if fingerprint == self._fingerprint:
            if not counted or self.source.count() == len(self._label):
                return ReconcileReport(unchanged=True)
            return self._full_reconcile(fingerprint)
        fresh = self.source.since(self._fingerprint)
        changed = [sid for sid, version in fresh.items() if self._versions.get(sid) != version]
        if self._needs_rebuild(len(self._label) + len(changed), len(changed)):
            return self._full_reconcile(fingerprint)
        replaced = [sid for sid in changed if sid in self._label]
        self._remove(replaced)
        self._add(changed, fresh)
        report = ReconcileReport(added=len(changed), removed=len(replaced))
        if self.source.count() != len(self._label):  # rows deleted since: find them in the full map
            full = self._full_reconcile(fingerprint)
            if full.rebuilt:
                return full
            report.added, report.removed = report.added + full.added, report.removed + full.removed
            return report
        self._fingerprint = fingerprint
        self._maybe_save(force=False)
        return report

    def _full_reconcile(self, fingerprint: str) -> ReconcileReport:
        truth = self.source.versions()
        removed = [i for i, v in self._versions.items() if truth.get(i) != v]
        added = [i for i, v in truth.items() if self._versions.get(i) != v]
        if not removed and not added and self._index is not None:
            if fingerprint != self._fingerprint:
                self._fingerprint = fingerprint
                self._maybe_save(force=False)
            return ReconcileReport(unchanged=True)
        if self._needs_rebuild(len(truth), len(added) + len(removed)):
            self._rebuild(truth)
            report = ReconcileReport(added=len(truth), rebuilt=True)
        else:
            self._remove(removed)
            self._add(added, truth)
            report = ReconcileReport(added=len(added), removed=len(removed))
        self._fingerprint = fingerprint
        self._maybe_save(force=report.rebuilt)
        return report

    def _maybe_save(self, force: bool) -> None:
        self._dirty = True
        if force or time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Write the index file now (patches are otherwise written at most every SAVE_EVERY_S)."""
        with self._lock:
            crashpoints.reached("index.before_save", CRASH_EXIT)
            self._save()
            self._dirty = False
            self._saved_at = time.monotonic()

    def close(self) -> None:
        """Write back unsaved patches (optional: a stale file is reconciled on the next open)."""
        if self._dirty:
            self.save()

    def _needs_rebuild(self, target_count: int, changes: int) -> bool:
        if self._index is None or self.dim == 0:
            return True
        if self._wanted_kind(target_count) != self.kind:
            return True
        if changes > PATCH_LIMIT_SHARE * max(len(self._label), 1) and len(self._label) > 16:
            return True
        return self.kind != "flat" and self._tombstones > MAX_TOMBSTONE_SHARE * max(len(self._ids), 1)

    def _rebuild(self, truth: dict[str, str]) -> None:
        ids = sorted(truth)
        self._reset(dim=0)
        if not ids:
            return
        first = normalise(self.source.vectors(ids[:1]))
        self._reset(dim=first.shape[1])
        sample = self._training_sample(ids) if self._wanted_kind(len(ids)) == "ivfpq" else None
        self._index = self._new_faiss(self.dim, len(ids), sample)
        self._add(ids, truth)

    def _add(self, ids: list[str], truth: dict[str, str]) -> None:
        for start in range(0, len(ids), FETCH_CHUNK):
            chunk = ids[start : start + FETCH_CHUNK]
            vectors = normalise(self.source.vectors(chunk))
            if self._index is None:
                self._reset(dim=vectors.shape[1])
                self._index = self._new_faiss(self.dim, len(ids), vectors)
            if vectors.shape[1] != self.dim:
                raise ValueError(f"{self.source.name}: vector of dimension {vectors.shape[1]}, index has {self.dim}")
            labels = np.arange(len(self._ids), len(self._ids) + len(chunk), dtype=np.int64)
            self._index.add_with_ids(vectors, labels)
            for sid, label in zip(chunk, labels, strict=True):
                self._ids.append(sid)
                self._label[sid] = int(label)
                self._versions[sid] = truth[sid]

    def _remove(self, ids: list[str]) -> None:
        labels = np.array([self._label.pop(i) for i in ids if i in self._label], dtype=np.int64)
        for i in ids:
            self._versions.pop(i, None)
        if not len(labels) or self._index is None:
            return
        if self.kind == "flat":
            self._index.remove_ids(labels)
        else:
            self._tombstones += len(labels)
        for label in labels:
            self._ids[int(label)] = None

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[tuple[str, float]]]:
        """Top-``k`` neighbours of each query by cosine similarity.

        Parameters
        ----------
        queries : (d,) or (q, d) float
        k : neighbours per query

        Returns
        -------
        one list of ``(snapshot_id, similarity)`` per query, best first
        """
        self.reconcile()
        with self._lock:
            q = normalise(np.atleast_2d(queries))
            if self._index is None or not self._label or k <= 0:
                return [[] for _ in range(len(q))]
            if q.shape[1] != self.dim:
                raise ValueError(f"query of dimension {q.shape[1]}, index {self.source.name} has {self.dim}")
            results = self._search(q, k)
            found = {sid for hits in results for sid, _ in hits}
            gone = found - self.source.existing(sorted(found)) if found else set()
            if gone:  # deleted rows: mark them deleted, then search again
                self._remove(sorted(gone))
                self._maybe_save(force=False)
                results = self._search(q, k)
            return results

    def _search(self, q: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        if self._index is None or not self._label:
            return [[] for _ in range(len(q))]
        shortlist = k * self.settings.rerank if self.kind == "ivfpq" else k
        fetch = min(shortlist + self._tombstones, len(self._ids))
        # A few queries gain nothing from OpenMP threads, and on a busy machine the threads' spin-waits
        # cost more than the search itself (90 ms instead of 1 ms for one query).
        faiss.omp_set_num_threads(1 if len(q) < SMALL_BATCH else _DEFAULT_THREADS)
        try:
            scores, labels = self._index.search(q, fetch)
        finally:
            faiss.omp_set_num_threads(_DEFAULT_THREADS)  # the default, not what another thread set
        if self.kind == "ivfpq":
            return [self._rerank(v, self._resolve(s, ls, shortlist), k) for v, s, ls in zip(q, scores, labels,
                                                                                           strict=True)]  # fmt: skip
        return [self._resolve(s, ls, k) for s, ls in zip(scores, labels, strict=True)]

    def _rerank(self, query: np.ndarray, shortlist: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
        """The PQ shortlist re-scored exactly with the source's own vectors (one read of ``rerank x k`` rows).

        PQ codes rank the near neighbours only roughly (recall@10 0.82 at 1M in bench/scale.py);
        the true top ``k`` is almost always in the shortlist, and the database holds the vectors.
        """
        if not shortlist:
            return []
        ids = [sid for sid, _ in shortlist]
        vectors = self.source.vectors(ids)
        if vectors.shape[1] != len(query):  # every row deleted meanwhile: nothing to re-score
            return shortlist[:k]
        exact = normalise(vectors) @ query
        order = np.argsort(-exact, kind="stable")[:k]
        return [(ids[i], float(exact[i])) for i in order]

    def _resolve(self, scores: np.ndarray, labels: np.ndarray, k: int) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for score, label in zip(scores, labels, strict=True):
            sid = self._ids[label] if 0 <= label < len(self._ids) else None
            if sid is not None:
                out.append((sid, float(score)))
            if len(out) == k:
                break
        return out

    def ids(self) -> list[str]:
        """Every indexed snapshot id (sorted)."""
        with self._lock:
            return sorted(self._label)

    def vector(self, snapshot_id: str) -> np.ndarray | None:
        """The normalised (d,) vector stored for ``snapshot_id``, None when it is not indexed."""
        with self._lock:
            label = self._label.get(snapshot_id)
            if label is None or self._index is None:
                return None
            if self.kind == "ivfpq":  # PQ codes only approximate it: the source holds the vector itself
                return normalise(self.source.vectors([snapshot_id]))[0]
            return self._index.reconstruct(label)

    # ------------------------------------------------------------------ persistence

    def _save(self) -> None:
        """Write header + faiss bytes to ``.part``, fsync, then rename over the old file."""
        header = {
            "version": 1,
            "kind": self.kind,
            "dim": self.dim,
            "fingerprint": self._fingerprint,
            "ids": self._ids,
            "versions": [self._versions.get(i) if i is not None else None for i in self._ids],
            "tombstones": self._tombstones,
        }
        blob = b"" if self._index is None else faiss.serialize_index(self._index).tobytes()
        head = json.dumps(header).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(self.path.name + ".part")
        with part.open("wb") as handle:
            handle.write(MAGIC + struct.pack("<QQ", len(head), len(blob)))
            handle.write(head)
            crashpoints.reached("index.mid_write", CRASH_EXIT)
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, self.path)

    def _load(self) -> bool:
        """Read the saved index; False (and nothing loaded) when it is missing or damaged."""
        try:
            data = self.path.read_bytes()
            if not data.startswith(MAGIC):
                return False
            head_len, blob_len = struct.unpack_from("<QQ", data, len(MAGIC))
            start = len(MAGIC) + 16
            if len(data) != start + head_len + blob_len:
                return False
            header = json.loads(data[start : start + head_len])
            blob = np.frombuffer(data[start + head_len :], dtype=np.uint8)
            index = faiss.deserialize_index(blob) if blob_len else None
        except (OSError, ValueError, RuntimeError, struct.error):
            return False
        self._reset(dim=int(header["dim"]))
        self.kind, self._index = header["kind"], index
        if self.kind == "hnsw" and index is not None:
            faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch = self.settings.ef_search
        if self.kind == "ivfpq" and index is not None:
            faiss.extract_index_ivf(index).nprobe = self.settings.nprobe
        self._ids = header["ids"]
        self._label = {sid: n for n, sid in enumerate(self._ids) if sid is not None}
        self._versions = {sid: v for sid, v in zip(self._ids, header["versions"], strict=True) if sid is not None}
        self._fingerprint = header["fingerprint"]
        self._tombstones = int(header.get("tombstones", 0))
        return True


# ---------------------------------------------------------------- the embeddings table as a source


def in_chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    """SQLite limits bound parameters per statement; 500 is safe on every build."""
    return [ids[i : i + size] for i in range(0, len(ids), size)]


class EmbeddingTableSource:
    """Vectors of one embedding model from the ``embeddings`` table of a :class:`~.db.Store`.

    Versions are the rows' ``created_at``: a writer that replaces an embedding writes a new
    timestamp, so the index sees the row as changed.
    """

    def __init__(self, store: Any, model_id: str, name_prefix: str = ""):
        self.store = store
        self.model_id = model_id
        self.name = f"{name_prefix}emb-{safe_file_part(model_id)}"

    def fingerprint(self) -> str:
        # An index probe, not a scan of the vector blobs: schema v3 (migrations.py) has the covering
        # index idx_embeddings_model_created_id for this MAX and for versions().
        row = self.store.execute("SELECT MAX(created_at) FROM embeddings WHERE model_id = ?", (self.model_id,))
        return str(row.fetchone()[0])

    def since(self, fingerprint: str) -> dict[str, str]:
        """Rows stamped at or after ``fingerprint`` (a range of idx_embeddings_model_created_id)."""
        sql = "SELECT snapshot_id, created_at FROM embeddings WHERE model_id = ? AND created_at >= ?"
        cursor = self.store.execute(sql, (self.model_id, fingerprint))
        return {sid: str(created) for sid, created in cursor.fetchall()}

    def count(self) -> int:
        row = self.store.execute("SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (self.model_id,))
        return int(row.fetchone()[0])

    def existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in in_chunks(ids):
            # by primary key only: with model_id in the WHERE, SQLite prefers the model_id index and scans
            sql = f"SELECT snapshot_id, model_id FROM embeddings WHERE snapshot_id IN ({','.join('?' * len(chunk))})"
            rows = self.store.execute(sql, tuple(chunk)).fetchall()
            found.update(sid for sid, model in rows if model == self.model_id)
        return found

    def versions(self) -> dict[str, str]:
        sql = "SELECT snapshot_id, created_at FROM embeddings WHERE model_id = ?"
        cursor = self.store.execute(sql, (self.model_id,))
        return {sid: str(created) for sid, created in cursor.fetchall()}

    def vectors(self, ids: list[str]) -> np.ndarray:
        found: dict[str, np.ndarray] = {}
        for chunk in in_chunks(ids):
            marks = ",".join("?" * len(chunk))
            cursor = self.store.execute(
                f"SELECT snapshot_id, embedding FROM embeddings WHERE snapshot_id IN ({marks})", tuple(chunk)
            )
            for sid, blob in cursor.fetchall():
                found[sid] = np.frombuffer(bytes(blob), dtype="<f4")
        missing = [i for i in ids if i not in found]
        if missing:  # deleted between versions() and now: the next reconcile drops it
            dim = len(next(iter(found.values()))) if found else 1
            found.update({i: np.zeros(dim, np.float32) for i in missing})
        return np.stack([found[i] for i in ids]).astype(np.float32)


def safe_file_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "_"
