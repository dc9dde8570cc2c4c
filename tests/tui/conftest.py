"""A real engine on a temporary SQLite database, seeded by extracting small corpus files."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine.api import Destill3D
from destill3d_tui.engine.config import Settings, load_settings

SEED_FILES = ("stl/teapot.stl", "stl/low_poly_benchy.stl", "obj/rabbit.obj", "stl/unit_cube.STL")
SEED_POINTS = 512
FROZEN_NOW = 1_800_000_000.0


def frozen_clock() -> float:
    return FROZEN_NOW


@pytest.fixture
def tui_settings(tmp_path: Path) -> Settings:
    return load_settings(None, {
        "database.url": f"sqlite:///{tmp_path / 'tui.db'}",
        "extraction.target_points": 256,
        "classification.enabled": False,
        "pipeline.workers": 1,
    })


@pytest.fixture
def engine(tui_settings: Settings) -> Iterator[Destill3D]:
    d3d = Destill3D(settings=tui_settings)
    yield d3d
    d3d.close()


def seed_snapshots(d3d: Destill3D, corpus: Path, files: tuple[str, ...] = SEED_FILES,
                   title_prefix: str = "", views: bool = False) -> list[str]:
    """Extract corpus files and store them with stable ids (uuid5 of the file name).

    The teapot gets two predictions (as a classifier would leave them) so the screens that
    show labels and confidence bars have something to show.
    """
    from destill3d_tui.engine.extract import extract_file
    from destill3d_tui.engine.store.service import insert_snapshot
    from destill3d_tui.engine.store.snapshot import Prediction

    ids = []
    for name in files:
        snap = extract_file(corpus / name, points=SEED_POINTS, seed=0, views=views)
        if "teapot" in name:
            snap.predictions = [
                Prediction("vase", 0.62, rank=1, uncertainty=0.21, model_name="destill3d_pointnet_mn40"),
                Prediction("cup", 0.25, rank=2, uncertainty=0.21, model_name="destill3d_pointnet_mn40"),
            ]
        snap.snapshot_id = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
        # wall-clock timings and the versions of whichever libraries happen to be imported would make
        # the stored size (shown on screen) vary by a few bytes from run to run
        snap.processing.timings_ms, snap.processing.library_versions = {}, {}
        snap.model_id = f"local:{Path(name).stem}"
        snap.provenance.title = title_prefix + Path(name).stem
        snap.provenance.license, snap.provenance.license_spdx = "Creative Commons Attribution", "CC-BY-4.0"
        with d3d.store.atomic():
            insert_snapshot(d3d.store, snap, snap.to_bytes())
        ids.append(snap.snapshot_id)
    return ids


@pytest.fixture
def seeded(engine: Destill3D, corpus_dir: Path) -> Destill3D:
    seed_snapshots(engine, corpus_dir)
    return engine


@pytest.fixture
def model_folder(tmp_path: Path, corpus_dir: Path) -> Path:
    """Two small model files in a folder of their own (the corpus is read-only)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("off/Cube.off", "obj/box.obj"):
        shutil.copy(corpus_dir / name, folder / Path(name).name)
    return folder
