"""`db similar` finds a mesh's rotated/rescaled and re-tessellated copies; duplicates cluster them."""

from __future__ import annotations

import numpy as np
import pytest

from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.errors import NotFoundError
from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.duplicates import is_near_duplicate, shape_descriptor
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot


@pytest.fixture
def families(store: Store, family_snapshots: dict[str, list[Snapshot]]) -> dict[str, list[str]]:
    ids = {}
    for name, snaps in family_snapshots.items():
        ids[name] = [store_snapshot(store, clone(s), label=name, title=f"{name} {n}") for n, s in enumerate(snaps)]
    return ids


def test_similar_returns_own_near_copies_first(store: Store, families: dict[str, list[str]]) -> None:
    service = DatasetService(store)
    for name, (original, *copies) in families.items():
        hits = service.find_similar(original, k=5)
        assert original not in [sid for sid, _ in hits]
        assert {sid for sid, _ in hits[:2]} == set(copies), (name, hits)
        assert hits[0][1] >= hits[2][1] and hits[1][1] > 0.95
    prefix = families["teapot"][1][:8]
    assert service.find_similar(prefix, k=1)[0][0] in families["teapot"]
    assert service.find_similar(families["socket"][0], k=10, min_similarity=0.95) == [
        h for h in service.find_similar(families["socket"][0], k=10) if h[1] >= 0.95
    ]
    with pytest.raises(NotFoundError):
        service.find_similar("no-such-id")


def test_duplicates_cluster_each_family(store: Store, families: dict[str, list[str]]) -> None:
    clusters = DatasetService(store).duplicates()  # default 0.98: copies score 0.99+, others < 0.9
    assert sorted(map(sorted, clusters)) == sorted(sorted(ids) for ids in families.values())
    assert DatasetService(store).duplicates(threshold=0.9999) == []


def test_descriptor_is_rotation_and_scale_invariant(family_snapshots: dict[str, list[Snapshot]]) -> None:
    points = family_snapshots["socket"][0].geometry.points.astype(np.float64)
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    a, b = shape_descriptor(points), shape_descriptor(7.0 * points @ rot.T + 3.0)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.999


def test_is_near_duplicate_at_ingest(store: Store, families: dict[str, list[str]],
                                     family_snapshots: dict[str, list[Snapshot]]) -> None:
    settings = Settings()
    again = clone(family_snapshots["fandisk"][1])
    assert is_near_duplicate(again, store, settings) in families["fandisk"]
    same_file = clone(family_snapshots["teapot"][0])
    stored = Snapshot.from_bytes(bytes(store.execute(
        "SELECT snapshot_data FROM snapshots WHERE snapshot_id = ?", (families["teapot"][0],)).fetchone()[0]))
    same_file.provenance.original_file_hash = stored.provenance.original_file_hash
    assert is_near_duplicate(same_file, store, settings) == families["teapot"][0]
    blob = clone(family_snapshots["socket"][0])
    rng = np.random.default_rng(1)
    blob.geometry.points = rng.standard_normal((2048, 3)).astype(np.float32) * [1.0, 0.2, 0.05]
    assert is_near_duplicate(blob, store, settings) is None


def test_classifier_embeddings_are_used_when_present(store: Store, family_snapshots: dict[str, list[Snapshot]]) -> None:
    rng = np.random.default_rng(2)
    ids = {}
    for name, snaps in family_snapshots.items():
        centre = rng.standard_normal(64)
        ids[name] = [
            store_snapshot(store, clone(s), label=name, embedding=centre + 0.1 * rng.standard_normal(64),
                           embedding_model="test-encoder")
            for s in snaps
        ]
    service = DatasetService(store)
    assert service.space_of(ids["teapot"][0]) == "test-encoder"
    hits = service.find_similar(ids["teapot"][0], k=2)
    assert {sid for sid, _ in hits} == set(ids["teapot"][1:])
    geo = service.find_similar(ids["teapot"][0], k=2, space="geometric")
    assert {sid for sid, _ in geo} == set(ids["teapot"][1:])


def test_similar_to_an_unstored_snapshot(store: Store, families: dict[str, list[str]],
                                         family_snapshots: dict[str, list[Snapshot]]) -> None:
    fresh = clone(family_snapshots["featuretype"][2])  # extracted, never stored
    hits = DatasetService(store).find_similar(fresh, k=3)
    assert {sid for sid, _ in hits[:3]} == set(families["featuretype"])
    with pytest.raises(NotFoundError):
        DatasetService(store).find_similar(fresh, space="some-encoder")
