"""Shared fixtures: isolated user dirs for every test, and paths into ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Config, data and cache dirs in a temp folder; no DESTILL3D_* setting leaks in."""
    import os

    home = tmp_path_factory.mktemp("d3dhome")
    for key in list(os.environ):
        if key.startswith("DESTILL3D_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DESTILL3D_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"shared data not found at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    assert CORPUS.is_dir(), f"corpus not found at {CORPUS}"
    return CORPUS


@pytest.fixture(scope="session")
def corpus_manifest() -> list[dict]:
    return json.loads((CORPUS / "MANIFEST.json").read_text())
