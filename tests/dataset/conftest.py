"""Fixtures for similarity / duplicates / export: a real SQLite store filled with real extractions.

Snapshots are extracted from corpus meshes and from rotated+rescaled and re-tessellated copies
of them written as new STL files, so near-copies are genuine different files of one shape.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import Prediction, Snapshot

_pg_counter = itertools.count()
BASE_MESHES = ("stl/teapot.stl", "off/socket.off", "obj/fandisk.obj", "stl/featuretype.STL")


def store_snapshot(
    store: Store,
    snap: Snapshot,
    *,
    platform: str = "local",
    label: str | None = None,
    confidence: float | None = None,
    license: str = "",
    license_spdx: str = "",
    title: str = "",
    embedding: np.ndarray | None = None,
    embedding_model: str = "",
    taxonomy: str = "modelnet40",
) -> str:
    """Store a snapshot through the store's own writer (blob, denormalised columns, predictions, embedding)."""
    from destill3d_tui.engine import licenses
    from destill3d_tui.engine.store.service import insert_snapshot

    snap = Snapshot.from_bytes(snap.to_bytes())  # leave the caller's (session-wide) object untouched
    p = snap.provenance
    p.platform, p.license, p.license_spdx = platform, license, license_spdx
    p.license_flags = licenses.flags_dict(licenses.from_spdx(license_spdx, raw=license)) if license_spdx else {}
    p.title, p.author = title or p.title, "Ada Author"
    p.source_url = p.source_url or f"https://example.org/{snap.snapshot_id}"
    snap.predictions = []
    if label is not None:
        conf = 0.9 if confidence is None else confidence
        snap.predictions = [Prediction(label=label, confidence=conf, taxonomy=taxonomy, model_name="test-model")]
    if embedding is not None:
        snap.embedding, snap.embedding_model = np.asarray(embedding, np.float32), embedding_model
    with store.atomic():
        insert_snapshot(store, snap, snap.to_bytes())
    return snap.snapshot_id


def _transformed_copies(src: Path, out: Path) -> tuple[Path, Path]:
    """(rotated + rescaled copy, re-tessellated copy) of a mesh file, as new STL files."""
    import trimesh
    from scipy.spatial.transform import Rotation

    mesh = trimesh.load(src, force="mesh")
    turned = mesh.copy()
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", [30, 45, 60], degrees=True).as_matrix() * 3.5
    matrix[:3, 3] = [10.0, -4.0, 2.0]
    turned.apply_transform(matrix)
    finer = mesh.subdivide()
    a, b = out / f"{src.stem}_turned.stl", out / f"{src.stem}_finer.stl"
    turned.export(a)
    finer.export(b)
    return a, b


@pytest.fixture(scope="session")
def family_snapshots(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> dict[str, list[Snapshot]]:
    """name -> [original, rotated+rescaled copy, re-tessellated copy] snapshots (extracted once)."""
    from destill3d_tui.engine.extract import extract_file

    work = tmp_path_factory.mktemp("families")
    families: dict[str, list[Snapshot]] = {}
    for rel in BASE_MESHES:
        src = work / Path(rel).name
        shutil.copy(corpus_dir / rel, src)
        turned, finer = _transformed_copies(src, work)
        families[src.stem] = [extract_file(p, seed=n) for n, p in enumerate((src, turned, finer))]
    return families


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'd3d.db'}")
    yield s
    s.close()


def clone(snap: Snapshot) -> Snapshot:
    """A copy with a fresh snapshot id and source hash (one extraction stored under several ids)."""
    import hashlib
    import uuid

    copy = Snapshot.from_bytes(snap.to_bytes())
    copy.snapshot_id = str(uuid.uuid4())
    copy.model_id = ""
    copy.provenance.original_file_hash = hashlib.sha256(copy.snapshot_id.encode()).hexdigest()
    return copy


PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture
def pg_store() -> Store:
    """A Store on a throwaway PostgreSQL database (the real server; never skipped)."""
    import os

    import psycopg

    name = f"destill3d_dataset_{os.getpid()}_{next(_pg_counter)}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"PostgreSQL is required at 127.0.0.1:5432 (user postgres): {exc}")
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    s = Store(f"postgresql://postgres@127.0.0.1:5432/{name}")
    yield s
    s.close()
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
