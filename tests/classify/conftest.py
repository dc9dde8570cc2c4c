"""Fixtures for the classification tests: real snapshots extracted from corpus files, the shipped model."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from destill3d_tui.engine.classify.registry import SHIPPED_DIR, ModelRegistry, RegisteredModel
from destill3d_tui.engine.store.snapshot import Snapshot

CORPUS_FILES = ("glb/tea_cup.glb", "glb/CesiumMilkTruck.glb", "stl/low_poly_benchy.stl", "off/socket.off",
                "obj/rabbit.obj")  # fmt: skip
MODEL_ID = "destill3d_pointnet_mn40"


@pytest.fixture(scope="session")
def corpus_snapshots(corpus_dir: Path) -> dict[str, bytes]:
    """Snapshots extracted once per session (as bytes, so each test gets fresh objects)."""
    from destill3d_tui.engine.extract import extract_file

    return {name: extract_file(corpus_dir / name).to_bytes("exact") for name in CORPUS_FILES}


@pytest.fixture
def snapshots(corpus_snapshots: dict[str, bytes]) -> list[Snapshot]:
    return [Snapshot.from_bytes(b) for b in corpus_snapshots.values()]


@pytest.fixture
def shipped() -> RegisteredModel:
    return ModelRegistry().get(MODEL_ID)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped model folder (card, graphs, prototypes)."""
    target = tmp_path / "models"
    shutil.copytree(SHIPPED_DIR, target, ignore=shutil.ignore_patterns("*.md", "__pycache__"))
    return target


@pytest.fixture(scope="module")
def subset(shared_dir: Path) -> tuple[np.ndarray, list[str]]:
    """Two validation shapes per class (the training script's split: stratified, seed 0, 10 %)."""
    data = np.load(shared_dir / "datasets" / "modelnet40_train_1024.npz")
    labels = data["labels"].astype(np.int64)
    rng = np.random.default_rng(0)
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        picks += sorted(idx[: max(1, round(len(idx) * 0.1))])[:2]
    classes = [str(c) for c in data["classes"]]
    return data["points"][picks].astype(np.float32), [classes[labels[i]] for i in picks]


def as_snapshots(points: np.ndarray, up: str = "z", platform: str = "local", fmt: str = "XYZ") -> list:
    """Duck-typed snapshots: what OnnxClassifier.classify reads."""
    return [SimpleNamespace(geometry=SimpleNamespace(points=p), processing=SimpleNamespace(up_axis=up),
                            provenance=SimpleNamespace(platform=platform, original_format=fmt))
            for p in points]  # fmt: skip
