"""Real inference with the shipped model on snapshots extracted from corpus files."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from destill3d_tui.engine.classify import upaxis
from destill3d_tui.engine.classify.inference import OnnxClassifier, fps, normalise
from destill3d_tui.engine.classify.registry import ModelRegistry
from destill3d_tui.engine.classify.stage import load_stage_classifier
from destill3d_tui.engine.classify.uncertainty import energy, normalised_entropy
from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.store.snapshot import Snapshot


def test_shipped_model_is_small_and_verified(shipped) -> None:
    assert shipped.weights_path.stat().st_size <= 5 * 1024 * 1024
    assert len(shipped.labels) == 40 and shipped.input_points == 512 and shipped.up_axis == "z"
    assert not shipped.requires_normals and shipped.input_features == ["xyz"]
    metrics = shipped.card["metrics"]
    assert metrics["val_overall_accuracy"] > 0.829  # beats the plain-PointNet floor named in the issue
    assert 0 < metrics["val_mean_class_accuracy"] <= metrics["val_overall_accuracy"] + 0.05
    cal = shipped.card["calibration"]
    assert cal["ece_after"] <= cal["ece_before"]


def test_graphs_use_standard_ops_only(shipped) -> None:
    import onnx

    expected = {shipped.card["file"]: {"ArgMax", "TopK"}, shipped.card["fast_file"]: {"TopK"}}  # FPS, kNN
    for name, ops in expected.items():
        graph = onnx.load(str(shipped.card_path.parent / name))
        assert all(op.domain in ("", "ai.onnx") and op.version >= 17 for op in graph.opset_import)
        assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}  # no custom ops
        assert ops <= {n.op_type for n in graph.graph.node}
    # the int8 graph is an onnxruntime CPU artefact: standard ops plus onnxruntime's own quantised ones
    int8 = onnx.load(str(shipped.card_path.parent / shipped.card["int8_file"]))
    assert {n.domain for n in int8.graph.node} <= {"", "ai.onnx", "com.microsoft"}
    assert "QLinearMatMul" in {n.op_type for n in int8.graph.node}


def test_tta_angles_follow_training_range() -> None:
    from destill3d_tui.engine.classify.inference import tta_angles

    assert tta_angles(1, 15) == [0.0]
    assert np.allclose(np.degrees(tta_angles(3, 15)), [-15, 0, 15])
    assert np.allclose(np.degrees(tta_angles(4, 180)), [0, 90, 180, 270])


def test_classifies_corpus_snapshots_on_cpu(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu", top_k=5)
    assert clf.providers == ["CPUExecutionProvider"]
    results = clf.classify(snapshots)
    assert len(results) == len(snapshots)
    for res in results:
        assert [p.rank for p in res.predictions] == [1, 2, 3, 4, 5]
        confs = [p.confidence for p in res.predictions]
        assert confs == sorted(confs, reverse=True) and 0 < confs[0] <= 1
        assert abs(res.probs.sum() - 1) < 1e-4
        assert {p.label for p in res.predictions} <= set(shipped.labels)
        assert res.embedding.shape == (shipped.embedding_dim,) and np.isfinite(res.embedding).all()
        assert 0 <= res.uncertainty <= 1 and res.uncertainty_method == "entropy"
        assert res.uncertainty == pytest.approx(float(normalised_entropy(res.probs)), abs=1e-6)


def test_batch_equals_single_and_is_deterministic(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu")
    batch = clf.classify(snapshots)
    again = clf.classify(snapshots)
    for i, snap in enumerate(snapshots):
        single = clf.classify([snap])[0]
        np.testing.assert_allclose(single.probs, batch[i].probs, atol=1e-5)
        np.testing.assert_allclose(single.embedding, batch[i].embedding, atol=1e-4)
        assert [p.label for p in single.predictions] == [p.label for p in batch[i].predictions]
        assert np.array_equal(again[i].probs, batch[i].probs)


def test_fast_graph_equals_self_contained_graph(shipped, snapshots) -> None:
    """The ordered graph (FPS outside) and the full graph (FPS inside) agree on engine-prepared input."""
    fast = OnnxClassifier(shipped, device="cpu", precision="fp32")
    full = OnnxClassifier(shipped, device="cpu", session_path=shipped.weights_path)
    assert fast.session_path != full.session_path
    ready = fast.prepare(np.stack([s.geometry.points for s in snapshots]))
    for a, b in zip(fast.forward(ready), full.forward(ready), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_accuracy_on_validation_shapes(shipped, shared_dir) -> None:
    """128 shapes of the model's own validation split (never trained on): engine path and any-order input."""
    data = np.load(shared_dir / "datasets" / "modelnet40_train_1024.npz")
    labels = data["labels"].astype(np.int64)
    pick = validation_split(labels)[::8][:128]
    fast = OnnxClassifier(shipped, device="cpu", precision="fp32")
    ready = fast.prepare(data["points"][pick].astype(np.float32))
    acc = (fast.forward(ready)[0].argmax(1) == labels[pick]).mean()
    assert acc >= 0.85
    full = OnnxClassifier(shipped, device="cpu", session_path=shipped.weights_path)
    shuffled = np.stack([r[np.random.default_rng(i).permutation(len(r))] for i, r in enumerate(ready)])
    assert (full.forward(shuffled)[0].argmax(1) == labels[pick]).mean() >= 0.85  # order does not matter


def test_fps_is_deterministic_and_spread() -> None:
    pts = np.random.default_rng(3).normal(size=(2, 2048, 3)).astype(np.float32)
    a, b = fps(pts, 512), fps(pts, 512)
    assert np.array_equal(a, b) and all(len(set(row)) == 512 for row in a)
    ready = normalise(np.take_along_axis(pts, a[..., None], axis=1))
    assert np.allclose(ready.mean(axis=1), 0, atol=1e-5)
    assert np.allclose(np.linalg.norm(ready, axis=2).max(axis=1), 1, atol=1e-5)


def test_up_axis_conversion_is_recorded_and_consistent(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu")
    snap = snapshots[1]  # the glTF truck says y-up
    assert snap.processing.up_axis == "y"
    clf.classify_batch([snap])
    assert any("rotated y-up to z-up" in t for t in snap.processing.transforms)
    # the same shape stated in z-up gives the same answer
    z_snap = Snapshot.from_bytes(snap.to_bytes("exact"))
    z_snap.geometry.points = upaxis.convert(z_snap.geometry.points, "y", "z")
    z_snap.processing.up_axis = "z"
    z_res = clf.classify([z_snap])[0]
    np.testing.assert_allclose(z_res.probs, clf.classify([snap])[0].probs, atol=1e-4)
    # unknown up axis: estimated by the default model (the truck stands on its wheels: y), recorded with how;
    # the first model's class confidence, a weaker judge, takes it upside down since the 16-band cues
    unknown = Snapshot.from_bytes(snap.to_bytes("exact"))
    unknown.processing.up_axis = ""
    default = ModelRegistry().get(Settings().classification.default_model)
    res = OnnxClassifier(default, device="cpu").classify([unknown])[0]
    assert res.up_guessed and res.up_axis == "y" and "estimated from the geometry" in res.notes[0]


REAL_UP = {"glb/CesiumMilkTruck.glb": "y", "glb/Duck.glb": "y", "glb/tea_cup.glb": "y", "obj/rabbit.obj": "y",
           "stl/low_poly_benchy.stl": "z", "stl/teapot.stl": "z"}  # fmt: skip
"""Corpus files whose up axis is known (glTF says y; the bunny scan is y-up; the print-bed STLs z-up).
All estimators miss 3mf/heartgears (flat gears: no way up in the shape); it is left out."""


def test_the_default_model_finds_the_up_axis_of_real_files(corpus_dir) -> None:
    from destill3d_tui.engine.extract import extract_file

    clf = OnnxClassifier(ModelRegistry().get(Settings().classification.default_model), device="cpu")
    found = {}
    for name in REAL_UP:
        snap = extract_file(corpus_dir / name)
        snap.processing.up_axis = ""  # as if the format said nothing, and no platform or format prior
        snap.provenance.platform, snap.provenance.original_format = "", ""
        found[name] = clf.up_estimate(snap).axis
    assert found == REAL_UP


def test_rotation_helpers_are_proper() -> None:
    for a in upaxis.AXES:
        r = upaxis.rotation(a, "z")
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1)
        unit = np.eye(3, dtype=np.float32)["xyz".index(a)]
        assert np.allclose(upaxis.convert(unit[None], a, "z")[0], [0, 0, 1])


def test_tta_averages_rotations_and_reports_spread(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu", tta=4)
    res = clf.classify(snapshots[:2])
    for r in res:
        assert r.uncertainty_method == "tta_std" and 0 <= r.uncertainty <= 1
    probs_t, _, _ = clf.predict_arrays(clf.prepare_snapshots(snapshots[:2])[0])
    assert probs_t.shape[0] == 4 and not np.allclose(probs_t[0], probs_t[1])
    np.testing.assert_allclose(res[0].probs, probs_t.mean(axis=0)[0], atol=1e-5)


def test_unknown_below_threshold(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu", unknown_threshold=1.01)
    preds = clf.classify(snapshots[:1])[0].predictions
    assert preds[0].label == "unknown" and preds[0].rank == 1 and preds[1].rank == 2
    assert preds[0].confidence == preds[1].confidence


def test_calibrated_confidence_uses_card_temperature(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu")
    ready, _ = clf.prepare_snapshots(snapshots)
    logits, _ = clf.forward(ready)
    res = clf.classify(snapshots)
    z = logits / shipped.temperature
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(np.stack([r.probs for r in res]), p, atol=1e-5)
    assert shipped.temperature != 1.0


def test_stage_classifier_fills_snapshots(snapshots) -> None:
    stage = load_stage_classifier(Settings())
    assert stage is not None and stage.model_id == "destill3d_pointnet_mn40_v3"  # the default
    stage.classify_batch(snapshots)
    for s in snapshots:
        assert s.top_prediction() is not None and s.embedding is not None
        assert s.embedding_model == stage.model_id
    off = Settings()
    off.classification.default_model = "no_such_model"
    assert load_stage_classifier(off) is None


def test_session_uses_one_thread_and_cpu_when_asked(shipped) -> None:
    clf = OnnxClassifier(shipped, device="cpu", threads=1)
    assert clf.session.get_providers() == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in ort.get_available_providers()


def validation_split(labels: np.ndarray) -> np.ndarray:
    """The training script's stratified split (seed 0, 10 %), sorted."""
    rng = np.random.default_rng(0)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val.append(idx[: max(1, round(len(idx) * 0.1))])
    return np.sort(np.concatenate(val))


def test_cpu_default_is_the_static_int8_graph_and_batch_independent(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu")
    assert clf.session_path.name == shipped.card["int8_file"]
    ready = clf.prepare(np.stack([s.geometry.points for s in snapshots]))
    logits, emb = clf.forward(ready)
    for i in range(len(ready)):  # fixed activation scales: exactly the same numbers alone or in a batch
        one_logits, one_emb = clf.forward(ready[i : i + 1])
        assert np.array_equal(one_logits[0], logits[i]) and np.array_equal(one_emb[0], emb[i])


def test_int8_accuracy_is_within_half_a_point_of_fp32(shipped, shared_dir) -> None:
    """The whole validation split (985 shapes): the card's int8 figure is what the graph scores."""
    data = np.load(shared_dir / "datasets" / "modelnet40_train_1024.npz")
    labels = data["labels"].astype(np.int64)
    val = validation_split(labels)
    int8 = OnnxClassifier(shipped, device="cpu", precision="int8")
    fp32 = OnnxClassifier(shipped, device="cpu", precision="fp32")
    ready = fp32.prepare(data["points"][val].astype(np.float32))
    acc8 = float((np.concatenate([int8.forward(ready[i : i + 128])[0] for i in range(0, len(val), 128)]).argmax(1)
                  == labels[val]).mean())  # fmt: skip
    acc32 = float((np.concatenate([fp32.forward(ready[i : i + 128])[0] for i in range(0, len(val), 128)]).argmax(1)
                   == labels[val]).mean())  # fmt: skip
    assert abs(acc8 - acc32) <= 0.005
    assert acc8 == pytest.approx(shipped.card["metrics"]["val_overall_accuracy_int8"], abs=1e-3)
    assert acc32 == pytest.approx(shipped.card["metrics"]["val_overall_accuracy"], abs=1e-3)


def test_precision_choice_and_its_errors(shipped) -> None:
    from destill3d_tui.engine.errors import InferenceError

    assert OnnxClassifier(shipped, device="cpu", precision="fp32").session_path.name == shipped.card["fast_file"]
    with pytest.raises(InferenceError, match="precision"):
        OnnxClassifier(shipped, device="cpu", precision="fp16")


def test_azimuth_search_recovers_shapes_turned_about_the_up_axis(shipped, shared_dir) -> None:
    """The model was trained on aligned shapes; turned ones score far lower until the search turns them back."""
    import math

    from destill3d_tui.engine.classify.inference import rotate_about_z

    data = np.load(shared_dir / "datasets" / "modelnet40_train_1024.npz")
    labels = data["labels"].astype(np.int64)
    pick = validation_split(labels)[::5][:160]
    angles = np.random.default_rng(3).uniform(0, 2 * math.pi, len(pick))
    turned = np.stack([rotate_about_z(p[None], a)[0] for p, a in zip(data["points"][pick].astype(np.float32), angles,
                                                                      strict=True)])  # fmt: skip
    plain = OnnxClassifier(shipped, device="cpu")
    searching = OnnxClassifier(shipped, device="cpu", azimuth_search=8)
    ready = plain.prepare(turned)
    acc_plain = (plain.forward(ready)[0].argmax(1) == labels[pick]).mean()
    back, chosen = searching.search_azimuth(ready)
    acc_search = (searching.forward(back)[0].argmax(1) == labels[pick]).mean()
    assert acc_search >= 0.85 and acc_search >= acc_plain + 0.1
    assert chosen.shape == (len(pick),) and set(np.round(np.degrees(chosen)).astype(int)) <= set(range(0, 360, 45))


def test_azimuth_search_is_recorded_and_batch_independent(shipped, snapshots) -> None:
    clf = OnnxClassifier(shipped, device="cpu", azimuth_search=4)
    batch = clf.classify(snapshots)
    for i, snap in enumerate(snapshots):
        single = clf.classify([snap])[0]
        assert np.array_equal(single.probs, batch[i].probs)
        turn = [n for n in batch[i].notes if "turns" in n]
        assert len(turn) == 1 and turn[0].startswith("classifier input: turned ") and "of 4 turns" in turn[0]
    assert not any("turns" in n for r in OnnxClassifier(shipped, device="cpu").classify(snapshots) for n in r.notes)


def test_energy_score_is_a_stable_tempered_logsumexp() -> None:
    """The energy ``unknown`` rule's score: T * log(sum(exp(logits / T))), finite where exp overflows."""
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (5, 40))
    for t in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(energy(logits, t), t * np.log(np.exp(logits / t).sum(axis=1)), rtol=1e-12)
    huge = np.array([[1000.0, 999.0, -5.0]])
    np.testing.assert_allclose(energy(huge, 1.0), [1000.0 + np.log(1 + np.exp(-1.0) + np.exp(-1005.0))])
    assert energy(logits + 10.0, 1.0) == pytest.approx(energy(logits, 1.0) + 10.0)  # shifts with the logits
