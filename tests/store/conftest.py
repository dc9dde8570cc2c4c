"""Fixtures for the store / queue / pipeline tests: real SQLite files, a real PostgreSQL database.

PostgreSQL: the server at 127.0.0.1:5432 (user postgres, trust auth). Each test that needs it
gets a throwaway database ``destill3d_test_<pid>_<n>``, dropped afterwards. These tests never
skip: without the server they fail and say so.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from destill3d_tui.engine.config import Settings, load_settings

PG_ADMIN = os.environ.get("DESTILL3D_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test")
PG_URL = "postgresql://postgres@127.0.0.1:5432/{name}"
REPO = Path(__file__).resolve().parents[2]
# Small, quick files of several formats (each extracts in well under a second).
SMALL_FILES = (
    "stl/20mm-xyz-cube.stl",
    "stl/multibody.stl",
    "stl/two_objects_mixed_case_names.stl",
    "off/Cube.off",
    "off/comments.off",
    "off/socket.off",
    "obj/cube.OBJ",
    "obj/wallhole.obj",
)
_counter = itertools.count()


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"PostgreSQL is required at 127.0.0.1:5432 (user postgres): {exc}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test; dropped afterwards."""
    name = f"destill3d_test_{os.getpid()}_{next(_counter)}"
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_URL.format(name=name)
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'd3d.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def small_dir(tmp_path: Path, corpus_dir: Path) -> Path:
    """Copies of SMALL_FILES in a folder of their own (the corpus is read-only)."""
    folder = tmp_path / "models"
    folder.mkdir()
    for rel in SMALL_FILES:
        shutil.copy(corpus_dir / rel, folder / Path(rel).name)
    return folder


def make_settings(db_url: str, **overrides: Any) -> Settings:
    """Settings for quick pipeline tests: 512 points, short leases, tiny backoff."""
    values: dict[str, Any] = {
        "database.url": db_url,
        "extraction.target_points": 512,
        "pipeline.workers": 1,
        "pipeline.lease_seconds": 30,
        "pipeline.retry_backoff_s": 0.05,
        "classification.enabled": False,
    }
    values.update(overrides)
    return load_settings(overrides=values)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``destill3d-tui`` subprocess: isolated home, repo importable (test targets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTILL3D_")}
    env.update({"DESTILL3D_HOME": str(home), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "destill3d_tui", *args]
