"""Classifier v3: the upright head and what it gives the up-axis estimate, the default model, the card."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.classify import upaxis
from destill3d_tui.engine.classify.inference import OnnxClassifier, rotate_about_z
from destill3d_tui.engine.classify.registry import ModelIntegrityError, ModelRegistry, load_card, sha256_file
from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import as_snapshots

V3 = "destill3d_pointnet_mn40_v3"


@pytest.fixture(scope="module")
def v3() -> OnnxClassifier:
    return OnnxClassifier(ModelRegistry().get(V3), device="cpu")


def laid_at_random(pts: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """Each shape turned about z at random, then laid on a random signed axis; and that axis."""
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for p in pts:
        axis = upaxis.SIGNED[rng.integers(len(upaxis.SIGNED))]
        out.append(upaxis.convert(rotate_about_z(p[None], float(rng.uniform(0, 2 * np.pi)))[0], "z", axis))
        truth.append(axis)
    return np.stack(out), truth


def test_default_model_is_v3_and_older_ones_stay_listed() -> None:
    assert Settings().classification.default_model == V3
    ids = [m.model_id for m in ModelRegistry().list()]
    assert {V3, "destill3d_pointnet_mn40_v2", "destill3d_pointnet_mn40"} <= set(ids)


def test_card_names_the_upright_head_and_its_weight(v3) -> None:
    model = v3.model
    assert model.upright_name == "upright" and model.upright_weight > 0
    assert "upright" in {o.name for o in v3.session.get_outputs()}  # the int8 graph the CPU runs has it too


def test_upright_head_prefers_the_right_way_up(v3, subset) -> None:
    """Shapes standing z-up: the head's log-probability is highest for +z among the six axes."""
    pts, _ = subset
    shapes = pts[::2]
    best = [upaxis.SIGNED[int(np.argmax(v3._judge_upright(p, list(upaxis.SIGNED))))] for p in shapes]
    share = np.mean([b == "z" for b in best])
    assert share >= 0.85, (share, best)  # measured 0.875 on these 40 (one per class), all six axes judged


def test_unknown_up_is_found_and_classified_on_a_fixed_subset(v3, subset) -> None:
    """The issue's hardest case: turned, laid on a random signed axis, no up axis in the file."""
    pts, names = subset
    laid, truth = laid_at_random(pts, seed=21)
    res = v3.classify(as_snapshots(laid, up=""))
    up_found = np.mean([r.up_axis == t for r, t in zip(res, truth, strict=True)])
    best = [next(p.label for p in r.predictions if p.label != "unknown") for r in res]
    right = np.mean([b == n for b, n in zip(best, names, strict=True)])
    # measured on these 80 (2 per class): up found 0.9125, accuracy 0.8375 (v2: 0.925 and 0.8125; on
    # the whole validation split the upright head finds 0.927 against v2's 0.876, see the card)
    assert up_found >= 0.88, up_found
    assert right >= 0.8, right


def test_estimate_by_the_upright_head_is_recorded(v3, corpus_snapshots) -> None:
    snap = Snapshot.from_bytes(corpus_snapshots["off/socket.off"])
    snap.processing.up_axis = ""  # OFF carries no convention
    snap.provenance.platform = "local"
    v3.classify_batch([snap])
    lines = [t for t in snap.processing.transforms if t.startswith("classifier input:")]
    assert any("the upright head" in t for t in lines), lines


def test_card_naming_an_upright_output_the_graph_lacks_is_refused(model_copy: Path) -> None:
    """A v2 card (no upright head in its graphs) that claims one is a card/graph mismatch."""
    card_path = model_copy / "destill3d_pointnet_mn40_v2.toml"
    text = card_path.read_text(encoding="utf-8")
    card = tomllib.loads(text)
    assert "upright" not in card["output"]
    card_path.write_text(text.replace("[output]\n", '[output]\nupright = "upright"\n'), encoding="utf-8")
    with pytest.raises(ModelIntegrityError) as err:
        OnnxClassifier(load_card(card_path), device="cpu")
    assert err.value.reason == "model_card_mismatch" and "upright" in str(err.value)


def test_shipped_v3_files_match_their_card() -> None:
    model = ModelRegistry().get(V3)
    card = model.card
    folder = model.card_path.parent
    for key, digest in (("file", "sha256"), ("fast_file", "fast_sha256"), ("int8_file", "int8_sha256")):
        assert sha256_file(folder / card[key]) == card[digest]
    assert card["metrics"]["val_upright_accuracy_int8"] > 0.5
