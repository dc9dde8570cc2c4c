"""The facade wires the services and ``Destill3D.close()`` closes everything it opened."""

from __future__ import annotations

import typing
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine import Destill3D, locations
from destill3d_tui.engine.api import DbAPI
from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.services.acquire import AcquireService
from destill3d_tui.engine.services.classify import ClassifyService, ModelsService
from destill3d_tui.engine.services.dataset import DatasetService, ExportPlan
from destill3d_tui.engine.store import duplicates as dup
from destill3d_tui.engine.store.db import Store, utcnow
from destill3d_tui.engine.store.export.common import ExportResult
from destill3d_tui.engine.store.index import EmbeddingIndex, EmbeddingTableSource

DIM = 32
SERVICES = ("acquire", "classify", "models", "dataset")


def _insert_embeddings(store: Store, ids: list[str], seed: int) -> None:
    vectors = np.random.default_rng(seed).standard_normal((len(ids), DIM)).astype("<f4")
    now = utcnow()
    with store.atomic():
        for sid, vec in zip(ids, vectors, strict=True):
            store.Snapshots.insert(snapshot_id=sid, model_id=f"local:{sid}", platform="local", snapshot_data=b"x",
                                   snapshot_version=1, acquired_at=now, processed_at=now).execute()
            store.Embeddings.insert(snapshot_id=sid, model_id="m1", embedding=vec.tobytes(), embedding_dim=DIM,
                                    created_at=utcnow()).execute()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "facade.db"
    store = Store(f"sqlite:///{path}")
    _insert_embeddings(store, [f"s{i:03d}" for i in range(100)], seed=0)
    store.close()
    return path


def _saved_index(path: Path) -> EmbeddingIndex:
    """The m1 index as a new process would find it on disk (the file the facade's service saved)."""
    store = Store(f"sqlite:///{path.resolve()}")
    source = EmbeddingTableSource(store, "m1", name_prefix=dup.database_key(store) + "-")
    return EmbeddingIndex(locations.index_dir(), source, Settings().index)


def test_close_writes_the_dataset_index_patches_back(db_path: Path) -> None:
    with Destill3D(db=db_path) as d3d:
        assert len(d3d.db.find_similar("s000", k=3)) == 3  # opens (and saves) the index
        _insert_embeddings(d3d.store, ["n000", "n001", "n002"], seed=1)
        assert {sid for sid, _ in d3d.db.find_similar("n000", k=200)} >= {"n001", "n002"}  # patched in memory
    # was: the dataset service lived in a module-level map and close() never reached it (added == 3)
    report = _saved_index(db_path).open()
    assert report.unchanged, report


def test_close_closes_each_built_service_once_and_the_store(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d3d = Destill3D(db=db_path)
    closed: Counter[str] = Counter()
    for name in SERVICES:
        service = getattr(d3d, name)
        assert getattr(d3d, name) is service  # built once, kept
        original = service.close
        monkeypatch.setattr(service, "close", lambda n=name, f=original: (closed.update([n]), f())[1])
    d3d.db.count()  # this thread's connection is open
    d3d.close()
    assert closed == Counter(SERVICES)
    assert d3d.store.database.is_closed()
    d3d.close()  # a second close is harmless and closes nothing twice
    assert closed == Counter(SERVICES)
    assert d3d.db.count() == 100  # usable again: a new connection, services built anew on use
    assert isinstance(d3d.dataset, DatasetService) and closed["dataset"] == 1
    d3d.close()


def test_close_builds_no_service_it_never_opened(db_path: Path) -> None:
    d3d = Destill3D(db=db_path)
    d3d.close()
    assert d3d._built == {}  # close() did not import FAISS or onnxruntime to close nothing


def test_the_facade_returns_real_types() -> None:
    # api.py imports these for annotations only (importing them costs FAISS, numba, onnxruntime)
    names = {c.__name__: c for c in (AcquireService, ClassifyService, ModelsService, DatasetService, ExportPlan,
                                     ExportResult)}  # fmt: skip

    def returns(function: typing.Any) -> typing.Any:
        return typing.get_type_hints(function, localns=names)["return"]

    hints = {name: returns(getattr(Destill3D, name).fget) for name in SERVICES}
    assert hints == {"acquire": AcquireService, "classify": ClassifyService, "models": ModelsService,
                     "dataset": DatasetService}  # was: Any, found by module name
    assert (returns(DbAPI.export), returns(DbAPI.export_plan)) == (ExportResult, ExportPlan)
