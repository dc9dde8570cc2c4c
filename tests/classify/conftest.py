"""Fixtures for the classification tests: real snapshots extracted from corpus files, the shipped model."""

from __future__ import annotations

import shutil
from pathlib import Path

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
