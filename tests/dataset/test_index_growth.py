"""The index grows with the data: new embeddings are added from the rows stamped since the last
look (never the whole id map), deletions are marked, and the result equals a rebuild."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from destill3d_tui.engine.config import IndexSettings
from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.index import EmbeddingIndex, EmbeddingTableSource

from .test_index import _insert_embeddings, _vectors


class WatchedSource(EmbeddingTableSource):
    """The real embeddings table, counting how often the full id -> version map is read."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, "m1")
        self.full_reads = 0

    def versions(self) -> dict[str, str]:
        self.full_reads += 1
        return super().versions()


def _ids(hits: list[list[tuple[str, float]]]) -> list[list[str]]:
    return [[sid for sid, _ in row] for row in hits]


def test_new_embeddings_are_added_without_reading_every_row(store: Store, tmp_path: Path) -> None:
    base, more = _vectors(300, 5), _vectors(60, 6)
    _insert_embeddings(store, [f"s{i:04d}" for i in range(300)], base)
    source = WatchedSource(store)
    index = EmbeddingIndex(tmp_path / "grown", source)
    assert index.open().rebuilt and source.full_reads == 1
    index.save()
    _insert_embeddings(store, [f"n{i:03d}" for i in range(60)], more)
    report = index.reconcile()
    assert (report.added, report.rebuilt, len(index)) == (60, False, 360)
    assert source.full_reads == 1  # only the rows stamped since the last fingerprint were read
    rebuilt = EmbeddingIndex(tmp_path / "fresh", EmbeddingTableSource(store, "m1"))
    assert rebuilt.open().rebuilt
    queries = np.concatenate([base[::30], more[::6]])
    assert _ids(index.search(queries, k=10)) == _ids(rebuilt.search(queries, k=10))
    index.save()
    reopened = EmbeddingIndex(tmp_path / "grown", source)  # a saved file: its count matches, no full read
    assert reopened.open().unchanged and len(reopened) == 360 and source.full_reads == 1


def test_deleted_hits_are_marked_and_a_stale_file_still_catches_up(store: Store, tmp_path: Path) -> None:
    vectors = _vectors(200, 7)
    _insert_embeddings(store, [f"s{i:04d}" for i in range(200)], vectors)
    source = WatchedSource(store)
    index = EmbeddingIndex(tmp_path, source)
    index.open()
    index.save()
    store.execute("DELETE FROM embeddings WHERE snapshot_id = 's0042'")
    hits = _ids(index.search(vectors[42], k=5))[0]
    assert "s0042" not in hits and len(hits) == 5 and len(index) == 199
    assert source.full_reads == 1  # the deleted hit was marked, nothing re-read
    stale = EmbeddingIndex(tmp_path, source)  # the file still holds s0042; the row count gives it away
    stale.open()
    assert len(stale) == 199 and "s0042" not in stale


def test_hnsw_grows_incrementally(store: Store, tmp_path: Path) -> None:
    _insert_embeddings(store, [f"s{i:04d}" for i in range(300)], _vectors(300, 8))
    index = EmbeddingIndex(tmp_path, EmbeddingTableSource(store, "m1"), IndexSettings(hnsw_threshold=200))
    index.open()
    more = _vectors(30, 9)
    _insert_embeddings(store, [f"n{i:03d}" for i in range(30)], more)
    report = index.reconcile()
    assert index.kind == "hnsw" and not report.rebuilt and report.added == 30
    assert [row[0] for row in _ids(index.search(more, k=1))] == [f"n{i:03d}" for i in range(30)]


def test_rebuild_is_a_maintenance_command(store: Store, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DESTILL3D_HOME", str(tmp_path / "home"))
    _insert_embeddings(store, [f"s{i:04d}" for i in range(50)], _vectors(50, 10))
    service = DatasetService(store)
    [(model, count, seconds)] = service.rebuild_index()
    assert (model, count) == ("m1", 50) and seconds >= 0
    assert list((tmp_path / "home").rglob("*emb-m1.faissidx"))
    assert service.embedding_index("m1").reconcile().unchanged


def test_cli_index_rebuild(store: Store, tmp_path: Path, monkeypatch, capsys) -> None:
    import json

    from destill3d_tui.cli import main

    monkeypatch.setenv("DESTILL3D_HOME", str(tmp_path / "home"))
    _insert_embeddings(store, [f"s{i:04d}" for i in range(20)], _vectors(20, 11))
    assert main(["--db", str(tmp_path / "d3d.db"), "db", "index", "rebuild", "--json"]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert line["model"] == "m1" and line["vectors"] == 20
