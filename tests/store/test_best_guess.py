"""`unknown` as a label in its own right, with the model's best guess beside it (issue 12).

A real extraction is classified by the shipped default model twice: as it is, and with its
points replaced by a coiled wire the model never saw (its out-of-distribution rule answers
`unknown`). Both are stored through the writer's insert on SQLite and PostgreSQL; the listing,
the keyset page, the review state, `db query` and a Parquet export then show the guess beside
`unknown` and nothing beside a real label.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine.classify.inference import OnnxClassifier
from destill3d_tui.engine.classify.registry import ModelRegistry
from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.extract import extract_file
from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store import service
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.review import Review
from destill3d_tui.engine.store.service import StoreService
from destill3d_tui.engine.store.snapshot import Snapshot
from destill3d_tui.engine.text import label_with_guess


def coiled_wire(n: int, seed: int = 11) -> np.ndarray:
    """A helix in the unit sphere: no ModelNet class looks like it."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 4 * np.pi, n)
    helix = np.stack([np.cos(t), np.sin(t), t / 6], 1) + rng.normal(0, 0.05, (n, 3))
    helix -= helix.mean(axis=0)
    return (helix / np.linalg.norm(helix, axis=1).max()).astype(np.float32)


@pytest.fixture(scope="module")
def classified(corpus_dir: Path) -> tuple[bytes, bytes]:
    """(a real file's snapshot classified as it is, the same snapshot as a coiled wire), as bytes."""
    clf = OnnxClassifier(ModelRegistry().get(Settings().classification.default_model), device="cpu")
    real = extract_file(corpus_dir / "glb/tea_cup.glb", seed=0)  # v3: cup 0.95 (the benchy, a boat, is unknown)
    wire = Snapshot.from_bytes(real.to_bytes())
    wire.snapshot_id, wire.model_id = "wire-0000", "local:wire"
    wire.provenance.original_file_hash = "0" * 64  # another file: the hash is unique per source
    wire.geometry.points = coiled_wire(len(real.geometry.points))
    clf.classify_batch([real, wire])
    return real.to_bytes(), wire.to_bytes()


def _store(url: str, classified: tuple[bytes, bytes]) -> tuple[Store, Snapshot, Snapshot]:
    store = Store(url)
    real, wire = (Snapshot.from_bytes(b) for b in classified)
    with store.atomic():
        for snap in (real, wire):
            service.insert_snapshot(store, snap, snap.to_bytes())
    service.tags_committed(store)
    return store, real, wire


def test_unknown_rows_carry_the_models_best_guess(db_url: str, classified: tuple[bytes, bytes]) -> None:
    store, real, wire = _store(db_url, classified)
    ranked = sorted(wire.predictions, key=lambda p: p.rank)
    assert ranked[0].label == "unknown", "the coiled wire must be out of distribution for this test to mean much"
    guess = ranked[1].label
    assert guess != "unknown" and real.top_prediction().label != "unknown"
    svc = StoreService(store)
    rows = {r.snapshot_id: r for r in svc.query(limit=10)}
    assert (rows[wire.snapshot_id].label, rows[wire.snapshot_id].best_guess) == ("unknown", guess)
    assert rows[real.snapshot_id].best_guess is None
    assert {r.snapshot_id: r.best_guess for r in svc.page()} == {k: r.best_guess for k, r in rows.items()}
    assert svc.count(label="unknown") == 1  # a label in its own right: counted and filtered like any
    assert rows[wire.snapshot_id].to_dict()["best_guess"] == guess  # what db query --json prints
    review = Review(store, user="ada")
    assert review.states([wire.snapshot_id])[wire.snapshot_id].best_guess == guess
    review.set_label([wire.snapshot_id], "spring")  # a person's label: no guess beside it any more
    state = review.states([wire.snapshot_id])[wire.snapshot_id]
    assert (state.label, state.best_guess) == ("spring", None)
    review.undo()
    assert review.states([wire.snapshot_id])[wire.snapshot_id].best_guess == guess
    store.close()


def test_db_query_and_exports_show_the_guess(tmp_path: Path, classified: tuple[bytes, bytes],
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    db = tmp_path / "d3d.db"
    store, real, wire = _store(f"sqlite:///{db}", classified)
    guess = sorted(wire.predictions, key=lambda p: p.rank)[1].label
    assert main(["--db", str(db), "db", "query", "--label", "unknown"]) == 0
    shown = capsys.readouterr().out
    assert label_with_guess("unknown", guess) == f"unknown · {guess}?" and f"{guess}?" in shown
    result = DatasetService(store).export("parquet", tmp_path / "out")
    table = pq.read_table([f for f in result.files if f.suffix == ".parquet"])
    by_id = dict(zip(table["snapshot_id"].to_pylist(), table.to_pylist(), strict=True))
    assert by_id[wire.snapshot_id]["label"] == "unknown" and by_id[wire.snapshot_id]["best_guess"] == guess
    assert by_id[real.snapshot_id]["best_guess"] == ""
    assert json.loads(by_id[wire.snapshot_id]["metadata"])["best_guess"] == guess
    store.close()
