"""Zero-/few-shot: MiniLM synonyms, few-shot prototypes, a user point encoder, honest 'unserved'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.classify.minilm import MiniLM, WordPiece, model_dir
from destill3d_tui.engine.classify.zeroshot import NameMapper
from destill3d_tui.engine.store.service import insert_snapshot
from destill3d_tui.engine.store.snapshot import Snapshot

LABELS = ["airplane", "car", "chair", "sofa", "table", "person", "bookshelf", "flower_pot", "toilet"]


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def test_minilm_runs_without_torch() -> None:
    import sys

    assert model_dir() is not None
    enc = MiniLM()
    vecs = enc.encode(["couch", "sofa", "carburettor"])
    assert vecs.shape == (3, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert vecs[0] @ vecs[1] > 0.8 > vecs[0] @ vecs[2]
    assert "torch" not in sys.modules or "sentence_transformers" not in sys.modules


def test_wordpiece_splits_like_bert() -> None:
    tok = WordPiece(model_dir() / "vocab.txt")
    ids = tok.encode("Flower-pot!")
    words = {v: k for k, v in tok.vocab.items()}
    assert [words[i] for i in ids] == ["[CLS]", "flower", "-", "pot", "!", "[SEP]"]


def test_couch_means_sofa_through_minilm() -> None:
    mapper = NameMapper(LABELS)
    couch = mapper.match("couch")
    assert (couch.label, couch.method) == ("sofa", "synonym_minilm") and couch.similarity > 0.8
    assert mapper.match("aeroplane").label == "airplane"
    assert mapper.match("Flower pot").method == "exact"
    assert mapper.match("loveseat").method == "synonym_table"
    nothing = mapper.match("carburettor")
    assert nothing.label is None and nothing.method == "none"


def test_zero_shot_reports_methods_and_unserved(tmp_path: Path, snapshots: list[Snapshot],
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "truck.d3d"
    snapshots[1].save(path)
    classes = "couch,aeroplane,automobile,carburettor"
    assert main(["classify", "zero-shot", "--snapshot", str(path), "--classes", classes, "--json"]) == 0
    ans = _lines(capsys.readouterr().out)[0]
    assert ans["unserved"] == ["carburettor"] and ans["methods"]["carburettor"] == "unserved"
    assert ans["methods"]["couch"].startswith("synonym (synonym_minilm -> sofa")
    assert set(ans["scores"]) == {"couch", "aeroplane", "automobile"}
    assert ans["label"] in ans["scores"] and ans["method"] == "synonym"
    assert ans["confidence"] == pytest.approx(max(ans["scores"].values()))
    assert main(["classify", "zero-shot", "--snapshot", str(path), "--classes", "carburettor", "--json"]) == 0
    none = _lines(capsys.readouterr().out)[0]
    assert none["label"] is None and none["method"] == "none"


def test_few_shot_prototypes(tmp_path: Path, snapshots: list[Snapshot], capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "d.db"
    with Destill3D(db=db) as d3d, d3d.store.atomic():
        for s in snapshots:
            insert_snapshot(d3d.store, s, s.to_bytes())
    cup, truck, boat = (s.snapshot_id for s in snapshots[:3])
    assert main(["--db", str(db), "classify", "few-shot", "--examples", f"teacup={cup}",
                 "--examples", f"lorry={truck}", "--json"]) == 0  # fmt: skip
    created = _lines(capsys.readouterr().out)[0]["few_shot_classes"]
    assert {c["name"] for c in created} == {"teacup", "lorry"}
    with Destill3D(db=db) as d3d:
        answers = d3d.classify.zero_shot(["teacup", "lorry", "carburettor"], [cup, truck, boat])
    assert [a.label for a in answers[:2]] == ["teacup", "lorry"]  # an example is nearest its own prototype
    assert all(a.method == "few_shot" for a in answers[:2]) and answers[0].unserved == ["carburettor"]
    assert answers[0].methods["teacup"] == "few_shot (1 examples)"
    assert main(["--db", str(db), "classify", "few-shot", "--examples", "broken"]) == 2


def _encoder_model(folder: Path) -> None:
    """A tiny OpenShape-style point encoder: mean of the points -> 3-d embedding (built with onnx.helper)."""
    import onnx
    from onnx import TensorProto, helper

    from destill3d_tui.engine.classify.registry import dumps_toml, sha256_file

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["points"], ["embedding"], axes=[1], keepdims=0)], "enc",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", 512, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "enc.onnx")
    np.savez(folder / "enc_text.npz", names=np.array(["widget", "gadget"]),
             embeddings=np.array([[0, 0, 1], [0, 0, -1]], np.float32))  # fmt: skip
    card = {"model_id": "toy_encoder", "kind": "point_encoder", "file": "enc.onnx",
            "sha256": sha256_file(folder / "enc.onnx"), "text_embeddings": "enc_text.npz",
            "input": {"points": 512, "up_axis": "z"},
            "output": {"embedding": "embedding", "embedding_dim": 3}}  # fmt: skip
    (folder / "enc.toml").write_text(dumps_toml(card))


def test_user_point_encoder_serves_its_names(tmp_path: Path, snapshots: list[Snapshot]) -> None:
    _encoder_model(tmp_path)
    with Destill3D(db=tmp_path / "d.db") as d3d:
        d3d.models.import_model(tmp_path / "enc.onnx", tmp_path / "enc.toml")
        d3d.settings.classification.zero_shot_encoder = "toy_encoder"
        path = tmp_path / "s.d3d"
        snapshots[0].save(path)
        ans = d3d.classify.zero_shot(["widget", "gadget", "couch", "carburettor"], [str(path)])[0]
    assert ans.methods["widget"] == "encoder" and ans.methods["gadget"] == "encoder"
    assert ans.methods["couch"].startswith("synonym") and ans.unserved == ["carburettor"]
    assert ans.scores["widget"] + ans.scores["gadget"] == pytest.approx(1.0, abs=1e-5)
