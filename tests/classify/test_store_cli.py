"""Predictions, uncertainty and embeddings land in the database, `snapshot show` and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.store.service import insert_snapshot
from destill3d_tui.engine.store.snapshot import Snapshot

MODEL_ID = "destill3d_pointnet_mn40_v3"  # the default model classifies here


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


@pytest.fixture
def stored(tmp_path: Path, snapshots: list[Snapshot]) -> tuple[Path, list[str]]:
    """A SQLite database holding the corpus snapshots, unclassified."""
    db = tmp_path / "d.db"
    with Destill3D(db=db) as d3d, d3d.store.atomic():
        for s in snapshots:
            insert_snapshot(d3d.store, s, s.to_bytes())
    return db, [s.snapshot_id for s in snapshots]


def test_classify_snapshot_writes_db(stored: tuple[Path, list[str]]) -> None:
    db, ids = stored
    with Destill3D(db=db) as d3d:
        preds = d3d.classify.snapshot(ids[0], top_k=3)
        assert [p.rank for p in preds] == [1, 2, 3] and all(p.model_name == MODEL_ID for p in preds)
        C, E, S = d3d.store.Classifications, d3d.store.Embeddings, d3d.store.Snapshots
        rows = list(C.select().where(C.snapshot_id == ids[0]).order_by(C.rank).dicts())
        assert [r["label"] for r in rows] == [p.label for p in preds]
        assert all(r["uncertainty"] is not None and 0 <= r["uncertainty"] <= 1 for r in rows)
        assert all(r["source"] == "classifier" for r in rows)
        emb = E.get(E.snapshot_id == ids[0])
        assert emb.embedding_dim == 256 and emb.model_id == MODEL_ID
        assert len(emb.embedding) == 256 * 4
        row = S.get(S.snapshot_id == ids[0])
        assert row.label == preds[0].label and row.confidence == pytest.approx(preds[0].confidence)
        again = d3d.db.get(ids[0])  # the stored blob carries them too
        assert again.top_prediction().label == preds[0].label and again.embedding.shape == (256,)
        np.testing.assert_allclose(np.frombuffer(emb.embedding, "<f4"), again.embedding, atol=1e-6)


def test_reclassifying_replaces_predicted_tags_and_keeps_platform_tags(tmp_path: Path,
                                                                       snapshots: list[Snapshot]) -> None:
    from destill3d_tui.engine.store.snapshot import Prediction

    snap = snapshots[0]
    snap.provenance.tags = ["Benchy"]
    snap.predictions = [Prediction(label="stale_label", confidence=0.9, taxonomy="modelnet40", model_name=MODEL_ID,
                                   rank=1, source="classifier")]  # fmt: skip
    db = tmp_path / "d.db"

    def tags(d3d: Destill3D) -> set[tuple[str, str]]:
        sql = ("SELECT t.tag_name, st.source FROM snapshot_tags st JOIN tags t ON t.tag_id = st.tag_id "
               "WHERE st.snapshot_id = ?")  # fmt: skip
        return set(d3d.store.execute(sql, (snap.snapshot_id,)).fetchall())

    with Destill3D(db=db) as d3d:
        with d3d.store.atomic():
            insert_snapshot(d3d.store, snap, snap.to_bytes())
        assert tags(d3d) == {("benchy", "platform"), ("stale_label", "predicted")}
        label = d3d.classify.snapshot(snap.snapshot_id)[0].label
        assert tags(d3d) == {("benchy", "platform"), (label.lower(), "predicted")}
    with Destill3D(db=db) as d3d:  # committed, and the new tag's id is usable by the next writer
        assert tags(d3d) == {("benchy", "platform"), (label.lower(), "predicted")}


def test_classify_all_then_cli_json(stored: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    db, ids = stored
    assert main(["--db", str(db), "classify", "all", "--json"]) == 0
    assert _lines(capsys.readouterr().out) == [{"classified": len(ids), "model": MODEL_ID}]
    with Destill3D(db=db) as d3d:
        assert all(d3d.db.get(i).top_prediction().model_name == MODEL_ID for i in ids)
        assert all(r.label for r in d3d.db.query(limit=100))
        assert d3d.store.Embeddings.select().count() == len(ids)
    assert main(["--db", str(db), "classify", "snapshot", ids[1][:8], "--top-k", "2", "--json"]) == 0
    out = _lines(capsys.readouterr().out)[0]
    led_by_unknown = out["predictions"][0]["label"] == "unknown"  # then the 2 best guesses follow it
    assert len(out["predictions"]) == 2 + led_by_unknown and out["predictions"][0]["model_name"] == MODEL_ID


def test_file_predictions_show_in_snapshot_show(tmp_path: Path, snapshots: list[Snapshot],
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "cup.d3d"
    snapshots[0].save(path)
    before = path.read_bytes()
    assert main(["classify", "snapshot", str(path), "--json"]) == 0  # a file is read, not changed
    assert path.read_bytes() == before
    assert main(["classify", "snapshot", str(path), "--write", "--json"]) == 0
    written = _lines(capsys.readouterr().out)[-1]["predictions"]
    assert main(["snapshot", "show", str(path), "--json"]) == 0
    shown = _lines(capsys.readouterr().out)[0]
    assert [p["label"] for p in shown["predictions"]] == [p["label"] for p in written]
    assert shown["embedding"] == {"dim": 256, "model": MODEL_ID}
    assert any("classifier input" in t for t in shown["processing"]["transforms"])


def test_models_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    models = _lines(capsys.readouterr().out)[0]["models"]
    assert any(m["model_id"] == MODEL_ID and m["num_classes"] == 40 for m in models)
    assert main(["models", "info", MODEL_ID, "--json"]) == 0
    info = _lines(capsys.readouterr().out)[0]
    assert info["verified"] is True and info["card"]["input"]["points"] == 512
    assert main(["models", "download", "anything"]) == 1  # no models_url configured: a clear error
    assert "models_url" in capsys.readouterr().err


def test_pipeline_classifies_what_it_stores(tmp_path: Path, corpus_dir: Path) -> None:
    """The pipeline's CLASSIFIED stage runs the shipped model (default settings) before storing."""
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("off/socket.off", "stl/low_poly_benchy.stl"):
        shutil.copy(corpus_dir / name, folder)
    with Destill3D(db=tmp_path / "p.db") as d3d:
        d3d.settings.pipeline.workers = 1
        summary = d3d.extract.from_directory(folder)
        assert summary.stored == 2
        unknown = 0
        for row in d3d.db.query(limit=10):
            snap = d3d.db.get(row.snapshot_id)
            assert row.label == snap.top_prediction().label and snap.embedding_model == MODEL_ID
            assert any(t.startswith("classifier input:") and "estimated" in t for t in snap.processing.transforms)
            # neither a socket nor a boat is a ModelNet class: "unknown" may lead, stored as a row of its own
            unknown += snap.top_prediction().label == "unknown"
        assert d3d.store.Embeddings.select().count() == 2
        assert d3d.store.Classifications.select().count() == 2 * 5 + unknown
