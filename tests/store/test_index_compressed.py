"""The compressed similarity index (issue 18): IVF-PQ above ``index.compress_above`` vectors.

Real FAISS indexes written to and read from real files; the vectors are 256-d (the shipped
encoder's dimension), drawn around 300 centres each with its own 8-d spread, like encoder
embeddings of a shape collection (clustered, not uniform). Exact neighbours come from numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.config import IndexSettings
from destill3d_tui.engine.store.index import EmbeddingIndex, normalise

DIM, N, QUERIES = 256, 20_000, 200
SETTINGS = IndexSettings(compress_above=10_000)


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).standard_normal((300, DIM)).astype(np.float32)
    bases = np.random.default_rng(8).standard_normal((300, 8, DIM)).astype(np.float32) * 0.35
    which = rng.integers(0, 300, n)
    spread = np.einsum("nr,nrd->nd", rng.standard_normal((n, 8)).astype(np.float32), bases[which])
    return normalise(centres[which] + spread + 0.03 * rng.standard_normal((n, DIM)).astype(np.float32))


class GrowingArraySource:
    """A VectorSource over a matrix that can grow: versions are row numbers, the fingerprint the row count."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.name = "compressed"
        self.rows = vectors

    def fingerprint(self) -> str:
        return f"{len(self.rows):09d}"

    def versions(self) -> dict[str, str]:
        return {f"s{i:06d}": "1" for i in range(len(self.rows))}

    def since(self, fingerprint: str) -> dict[str, str]:
        return {f"s{i:06d}": "1" for i in range(int(fingerprint), len(self.rows))}

    def count(self) -> int:
        return len(self.rows)

    def vectors(self, ids: list[str]) -> np.ndarray:
        return self.rows[[int(i[1:]) for i in ids]]

    def existing(self, ids: list[str]) -> set[str]:
        return {i for i in ids if int(i[1:]) < len(self.rows)}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(N, seed=1), clustered(QUERIES, seed=2)


def recall_at_10(index: EmbeddingIndex, base: np.ndarray, queries: np.ndarray) -> float:
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    found = index.search(queries, 10)
    return float(np.mean([len({f"s{i:06d}" for i in want} & {sid for sid, _ in got}) / 10
                          for want, got in zip(exact, found, strict=True)]))  # fmt: skip


def test_above_compress_above_the_index_is_ivfpq_with_recall_at_least_090(tmp_path: Path, data) -> None:
    base, queries = data
    index = EmbeddingIndex(tmp_path, GrowingArraySource(base), SETTINGS)
    index.open()
    assert index.kind == "ivfpq" and len(index) == N
    assert recall_at_10(index, base, queries) >= 0.90
    index.save()
    again = EmbeddingIndex(tmp_path, GrowingArraySource(base), SETTINGS)
    again.open()
    assert again.kind == "ivfpq"
    assert again.search(queries[:20], 10) == index.search(queries[:20], 10)  # the saved file answers the same
    below = EmbeddingIndex(tmp_path / "small", GrowingArraySource(base[:5000]), SETTINGS)
    below.open()
    assert below.kind != "ivfpq"


def test_incremental_additions_find_what_a_rebuild_finds(tmp_path: Path, data) -> None:
    base, queries = data
    source = GrowingArraySource(base[: N - 1000])
    index = EmbeddingIndex(tmp_path, source, SETTINGS)
    index.open()
    source.rows = base  # 1,000 new embeddings: added to the trained index, not rebuilt
    report = index.reconcile()
    assert report.added == 1000 and not report.rebuilt and len(index) == N
    rebuilt = EmbeddingIndex(tmp_path / "rebuilt", GrowingArraySource(base), SETTINGS)
    rebuilt.rebuild()
    assert index.ids() == rebuilt.ids()
    ours, theirs = index.search(queries, 10), rebuilt.search(queries, 10)
    overlap = np.mean([len({s for s, _ in a} & {s for s, _ in b}) / 10 for a, b in zip(ours, theirs, strict=True)])
    assert overlap >= 0.9  # two trainings (different samples) quantise slightly differently
    assert recall_at_10(index, base, queries) >= 0.90
    added = base[N - 1000 : N - 990]
    assert [hits[0][0] for hits in index.search(added, 1)] == [f"s{i:06d}" for i in range(N - 1000, N - 990)]


def test_ivfpq_hits_carry_exact_similarities_from_the_source_vectors(tmp_path: Path, data) -> None:
    """The PQ shortlist is re-scored with the stored vectors: scores are the true cosines, best first."""
    base, queries = data
    index = EmbeddingIndex(tmp_path, GrowingArraySource(base), SETTINGS)
    index.open()
    for query, hits in zip(queries[:20], index.search(queries[:20], 10), strict=True):
        exact = [float(base[int(sid[1:])] @ query) for sid, _ in hits]
        assert [score for _, score in hits] == pytest.approx(exact, abs=1e-5)
        assert exact == sorted(exact, reverse=True)
    pq_only = IndexSettings(compress_above=10_000, rerank=1)
    coarse = EmbeddingIndex(tmp_path / "coarse", GrowingArraySource(base), pq_only)
    coarse.open()
    assert recall_at_10(index, base, queries) >= recall_at_10(coarse, base, queries)
