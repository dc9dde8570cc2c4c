"""Classifier v2: azimuth invariance, the up-axis estimate, the unknown outcome, accuracy on a fixed subset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from destill3d_tui.engine.classify import canonical, upaxis
from destill3d_tui.engine.classify.inference import OnnxClassifier, rotate_about_z
from destill3d_tui.engine.classify.registry import ModelRegistry
from destill3d_tui.engine.config import Settings
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import as_snapshots

V2 = "destill3d_pointnet_mn40_v2"


@pytest.fixture(scope="module")
def v2() -> OnnxClassifier:
    return OnnxClassifier(ModelRegistry().get(V2), device="cpu")


def test_v2_and_the_first_model_stay_listed() -> None:
    ids = [m.model_id for m in ModelRegistry().list()]
    assert V2 in ids and "destill3d_pointnet_mn40" in ids
    assert Settings().classification.default_model != V2  # v3 replaced it as the default


def test_canonical_frame_ignores_turns_about_up() -> None:
    cloud = np.random.default_rng(1).normal(size=(1, 512, 3)).astype(np.float32) * [1.0, 0.5, 0.3]
    cloud[0, :40] += [1.5, 0.4, 0]  # asymmetric, so both signs are fixed by the skew
    base = canonical.canonicalise(cloud)
    for angle in (0.3, 1.7, math.pi, 4.4):
        np.testing.assert_allclose(canonical.canonicalise(rotate_about_z(cloud, angle)), base, atol=1e-4)
    assert not np.allclose(rotate_about_z(cloud, 1.7), cloud, atol=1e-2)


def test_turned_copy_gets_the_same_prediction(v2, subset) -> None:
    pts, _ = subset
    shapes = pts[::10]
    base = v2.classify(as_snapshots(shapes))
    for angle in (0.7, 2.9, 5.1):
        turned = v2.classify(as_snapshots(np.stack([rotate_about_z(p[None], angle)[0] for p in shapes])))
        for a, b in zip(base, turned, strict=True):
            assert a.predictions[0].label == b.predictions[0].label
            np.testing.assert_allclose(a.probs, b.probs, atol=0.02)


def test_accuracy_on_a_fixed_turned_subset(v2, subset) -> None:
    pts, names = subset
    rng = np.random.default_rng(4)
    turned = np.stack([rotate_about_z(p[None], a)[0] for p, a in zip(pts, rng.uniform(0, 2 * np.pi, len(pts)),
                                                                        strict=True)])  # fmt: skip
    res = v2.classify(as_snapshots(turned))
    best = [next(p.label for p in r.predictions if p.label != "unknown") for r in res]
    right = np.mean([b == n for b, n in zip(best, names, strict=True)])
    assert right >= 0.78, right  # measured 0.8125 on these 80 (2 per class); the first model scores 0.70


def test_file_statement_wins_over_geometry(subset) -> None:
    pts, _ = subset
    laid = upaxis.convert(pts[0], "z", "x")  # truly x-up
    est = upaxis.estimate(laid, file_axis="y")
    assert est.axis == "y" and est.how == "from the file"


def test_print_bed_prior_favours_z_for_an_ambiguous_shape() -> None:
    cube = np.random.default_rng(2).uniform(-1, 1, (1024, 3)).astype(np.float32)  # no side is special
    assert upaxis.estimate(cube, platform="thingiverse").axis == "z"
    assert "print bed" in upaxis.estimate(cube, platform="printables").how
    assert "z up for printing" in upaxis.estimate(cube, fmt="STL").how
    bonus, reason = upaxis.prior_scores("local", "STEP")
    assert not bonus.any() and reason == ""  # STEP/IGES carry no convention


def test_support_face_cue_finds_a_laid_shape(subset) -> None:
    """Shapes turned at random and laid on a random signed axis: the geometry alone finds most."""
    pts, _ = subset
    rng = np.random.default_rng(9)
    found = 0
    for p in pts[::2]:
        axis = upaxis.SIGNED[rng.integers(6)]
        laid = upaxis.convert(rotate_about_z(p[None], float(rng.uniform(0, 6.3)))[0], "z", axis)
        found += upaxis.estimate(laid).axis == axis
    assert found / len(pts[::2]) >= 0.7, found  # measured 0.8 on the validation split (geometry alone)


def test_table_on_its_legs_is_found_from_the_support_face() -> None:
    """A table top on four legs, laid on -y: the four feet make the support polygon."""
    rng = np.random.default_rng(3)
    top = np.c_[rng.uniform(-1, 1, (600, 2)), np.full(600, 0.6)]
    feet = [(sx, sy) for sx in (-0.9, 0.9) for sy in (-0.9, 0.9)]
    legs = np.concatenate([np.c_[np.full((100, 2), f) + rng.normal(0, 0.02, (100, 2)), rng.uniform(-0.6, 0.6, 100)]
                           for f in feet])  # fmt: skip
    table = np.concatenate([top, legs]).astype(np.float32)
    est = upaxis.estimate(upaxis.convert(table, "z", "-y"))
    assert est.axis == "-y" and "estimated from the geometry" in est.how


def test_estimate_is_recorded_in_transforms(v2, corpus_snapshots) -> None:
    snap = Snapshot.from_bytes(corpus_snapshots["stl/low_poly_benchy.stl"])
    snap.processing.up_axis = ""
    snap.provenance.platform = "printables"
    v2.classify_batch([snap])
    lines = [t for t in snap.processing.transforms if t.startswith("classifier input:")]
    assert any("printables files sit on a print bed" in t for t in lines), lines
    assert any("canonical ground frame" in t for t in lines)


def test_out_of_distribution_cloud_is_unknown_with_best_guess(v2, subset) -> None:
    rng = np.random.default_rng(11)
    t = rng.uniform(0, 4 * np.pi, 1024)
    helix = np.stack([np.cos(t), np.sin(t), t / 6], 1) + rng.normal(0, 0.05, (1024, 3))  # a coiled wire
    helix -= helix.mean(axis=0)
    helix = (helix / np.linalg.norm(helix, axis=1).max()).astype(np.float32)
    pts, names = subset
    ood, clean = v2.classify(as_snapshots(np.stack([helix, pts[0]])))
    assert ood.unknown and ood.predictions[0].label == "unknown" and ood.predictions[1].label != "unknown"
    assert ood.predictions[0].confidence == ood.predictions[1].confidence  # the best guess stands beside it
    assert not clean.unknown and clean.predictions[0].label == names[0]
