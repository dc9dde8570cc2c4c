"""The FAISS index is derived from the embeddings table and never disagrees with it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.config import IndexSettings
from destill3d_tui.engine.store.db import Store, utcnow
from destill3d_tui.engine.store.index import EmbeddingIndex, EmbeddingTableSource, normalise

DIM = 48


def _vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIM))
    return (centres[rng.integers(0, 8, n)] + 0.6 * rng.standard_normal((n, DIM))).astype(np.float32)


def _insert_embeddings(store: Store, ids: list[str], vectors: np.ndarray, model: str = "m1") -> None:
    now = utcnow()
    with store.atomic():
        for sid, vec in zip(ids, vectors, strict=True):
            store.Snapshots.insert(
                snapshot_id=sid, model_id=f"local:{sid}", platform="local", snapshot_data=b"x",
                snapshot_version=1, acquired_at=now, processed_at=now,
            ).execute()
            store.Embeddings.insert(
                snapshot_id=sid, model_id=model, embedding=vec.astype("<f4").tobytes(),
                embedding_dim=DIM, created_at=utcnow(),
            ).execute()


def _exact(ids: list[str], vectors: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    sims = normalise(vectors) @ normalise(query[None])[0]
    return [ids[i] for i in np.argsort(-sims, kind="stable")[:k]]


def _index(store: Store, directory: Path, **settings: int) -> EmbeddingIndex:
    return EmbeddingIndex(directory, EmbeddingTableSource(store, "m1"), IndexSettings(**settings))


def test_flat_search_equals_exact_and_reopens_without_rebuild(store: Store, tmp_path: Path) -> None:
    ids = [f"s{i:04d}" for i in range(300)]
    vectors = _vectors(300, 0)
    _insert_embeddings(store, ids, vectors)
    index = _index(store, tmp_path)
    assert index.open().rebuilt and index.kind == "flat" and len(index) == 300
    for q in (0, 17, 299):
        got = [sid for sid, _ in index.search(vectors[q], k=10)[0]]
        assert got == _exact(ids, vectors, vectors[q], 10)
    again = _index(store, tmp_path)
    report = again.open()
    assert report.unchanged and len(again) == 300
    assert again.search(vectors[5], k=1)[0][0][0] == "s0005"


def test_added_removed_and_replaced_rows_are_patched_on_query(store: Store, tmp_path: Path) -> None:
    ids = [f"s{i:04d}" for i in range(100)]
    vectors = _vectors(100, 1)
    _insert_embeddings(store, ids, vectors)
    index = _index(store, tmp_path)
    index.open()
    new = _vectors(5, 2)
    _insert_embeddings(store, [f"n{i}" for i in range(5)], new)
    store.execute("DELETE FROM embeddings WHERE snapshot_id IN ('s0000', 's0001')")
    replaced = -vectors[10]
    store.execute(
        "UPDATE embeddings SET embedding = ?, created_at = ? WHERE snapshot_id = 's0010'",
        (replaced.astype("<f4").tobytes(), str(utcnow())),
    )
    assert index.search(new[3], k=1)[0][0][0] == "n3"
    everything = {sid for sid, _ in index.search(vectors[0], k=200)[0]}
    assert "s0000" not in everything and "s0001" not in everything and len(everything) == 103
    top, score = index.search(replaced, k=1)[0][0]
    assert top == "s0010" and score == pytest.approx(1.0, abs=1e-5)
    reopened = _index(store, tmp_path)  # patches are not written back at once: the file is stale
    report = reopened.open()
    assert report.added == 6 and report.removed == 3 and len(reopened) == 103
    index.close()  # writes the patched index back
    assert _index(store, tmp_path).open().unchanged


def test_hnsw_above_threshold_with_tombstones(store: Store, tmp_path: Path) -> None:
    ids = [f"s{i:04d}" for i in range(400)]
    vectors = _vectors(400, 3)
    _insert_embeddings(store, ids, vectors)
    index = _index(store, tmp_path, hnsw_threshold=200, ef_search=64)
    index.open()
    assert index.kind == "hnsw"
    hits = [len(set(_exact(ids, vectors, vectors[q], 10)) & {s for s, _ in index.search(vectors[q], 10)[0]})
            for q in range(0, 400, 20)]
    assert np.mean(hits) / 10 >= 0.9
    store.execute("DELETE FROM embeddings WHERE snapshot_id = 's0007'")
    found = [s for s, _ in index.search(vectors[7], k=10)[0]]
    assert "s0007" not in found and len(found) == 10


def test_damaged_file_is_rebuilt_not_trusted(store: Store, tmp_path: Path) -> None:
    ids = [f"s{i:04d}" for i in range(50)]
    vectors = _vectors(50, 4)
    _insert_embeddings(store, ids, vectors)
    index = _index(store, tmp_path)
    index.open()
    data = index.path.read_bytes()
    index.path.write_bytes(data[: len(data) // 2])
    again = _index(store, tmp_path)
    assert again.open().rebuilt
    assert [s for s, _ in again.search(vectors[9], 3)[0]] == _exact(ids, vectors, vectors[9], 3)


CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from pathlib import Path
    from destill3d_tui.engine.store.db import Store, utcnow
    from destill3d_tui.engine.store.index import EmbeddingIndex, EmbeddingTableSource
    url, folder, crash_at = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = Store(url)
    index = EmbeddingIndex(folder, EmbeddingTableSource(store, "m1"))
    index.open()
    now = utcnow()
    with store.atomic():
        for i in range(3):
            store.Snapshots.insert(snapshot_id=f"late{i}", model_id=f"local:late{i}", platform="local",
                snapshot_data=b"x", snapshot_version=1, acquired_at=now, processed_at=now).execute()
            store.Embeddings.insert(snapshot_id=f"late{i}", model_id="m1", embedding_dim=48, created_at=utcnow(),
                embedding=np.full(48, i + 1.0, "<f4") * np.arange(48, dtype="<f4")).execute()
        store.execute("DELETE FROM embeddings WHERE snapshot_id = 's0003'")
    os.environ["DESTILL3D_CRASH_AT"] = crash_at   # the commit is done; die while updating the index
    index.reconcile()
    index.save()
    print("survived")
    """
)


@pytest.mark.parametrize("crash_at", ["index.before_save", "index.mid_write"])
def test_kill_between_commit_and_index_write_is_reconciled(store: Store, tmp_path: Path, crash_at: str) -> None:
    ids = [f"s{i:04d}" for i in range(40)]
    vectors = _vectors(40, 5)
    _insert_embeddings(store, ids, vectors)
    folder = tmp_path / "index"
    env = {**os.environ, "DESTILL3D_CRASH_AT": ""}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, store.url, str(folder), crash_at], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 86, proc.stderr
    assert "survived" not in proc.stdout
    index = _index(store, folder)
    report = index.open()  # the file on disk covers the old rows only
    assert report.added == 3 and report.removed == 1
    late = np.arange(48, dtype=np.float32) * 2.0
    assert index.search(late, k=1)[0][0][0] in {"late0", "late1", "late2"}
    listed = {s for s, _ in index.search(vectors[3], k=100)[0]}
    assert "s0003" not in listed and len(listed) == 42
