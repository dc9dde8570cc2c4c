"""`db similar / duplicates / export` from the command line, and through ``Destill3D().db``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot


@pytest.fixture
def db_file(tmp_path: Path, family_snapshots: dict[str, list[Snapshot]]) -> tuple[Path, dict[str, list[str]]]:
    path = tmp_path / "cli.db"
    store = Store(f"sqlite:///{path}")
    ids = {name: [store_snapshot(store, clone(s), label=name, license_spdx="CC-BY-4.0", platform="thingiverse",
                                 title=f"{name} [WIP] {n}") for n, s in enumerate(snaps)]
           for name, snaps in family_snapshots.items()}
    store.close()
    return path, ids


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_similar_duplicates_export(db_file: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       family_snapshots: dict[str, list[Snapshot]]) -> None:
    path, ids = db_file
    original, *copies = ids["fandisk"]
    assert main(["--db", str(path), "db", "similar", original[:10], "--k", "3", "--json"]) == 0
    hits = _json_lines(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3] and {h["snapshot_id"] for h in hits[:2]} == set(copies)
    assert hits[0]["label"] == "fandisk" and "[WIP]" in hits[0]["title"]

    assert main(["--db", str(path), "db", "duplicates", "--json"]) == 0
    clusters = _json_lines(capsys.readouterr().out)
    assert sorted(sorted(c["snapshot_ids"]) for c in clusters) == sorted(sorted(v) for v in ids.values())

    out = tmp_path / "export.h5"
    code = main(["--db", str(path), "db", "export", "--format", "hdf5", "--output", str(out), "--taxonomy",
                 "modelnet40", "--split", "2:0:1", "--json"])
    assert code == 0
    result = _json_lines(capsys.readouterr().out)[0]
    assert result["count"] == 12 and result["split_counts"] == {"train": 8, "test": 4}
    with h5py.File(tmp_path / "export" / "ply_data_test0.h5") as f:
        assert f["data"].shape == (4, 2048, 3) and sorted(n.decode() for n in f["label_names"][:]) == sorted(ids)

    copy = tmp_path / "copy.d3d"
    family_snapshots["fandisk"][1].save(copy)
    assert main(["--db", str(path), "db", "similar", str(copy), "--k", "3", "--json"]) == 0
    from_file = {h["snapshot_id"] for h in _json_lines(capsys.readouterr().out)}
    assert from_file == set(ids["fandisk"])

    assert main(["--db", str(path), "db", "similar", original[:10]]) == 0
    table = capsys.readouterr().out
    assert "[WIP]" in table and "fandisk" in table

    assert main(["--db", str(path), "db", "export", "--format", "numpy", "--output", str(out)]) == 1
    assert "is not an empty folder" in capsys.readouterr().err  # refuses to write over an export


def test_python_api(db_file: tuple[Path, dict]) -> None:
    path, ids = db_file
    with Destill3D(db=path) as d3d:
        hits = d3d.db.find_similar(ids["socket"][0], k=2, min_similarity=0.9)
        assert {sid for sid, _ in hits} == set(ids["socket"][1:])
        assert len(d3d.db.duplicates(threshold=0.98)) == 4
        result = d3d.db.export("numpy", return_arrays=True, split=(1, 0, 0))
        assert result.arrays["points"].shape == (12, 2048, 3)
        assert result.count == 12 and set(result.arrays["split"]) == {"train"}
