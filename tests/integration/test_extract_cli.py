"""`extract file`, `extract dir` and `snapshot show` as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from destill3d_tui.commands.extract import output_names
from destill3d_tui.engine.store.snapshot import Snapshot

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "destill3d_tui", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_output_names_never_collide(tmp_path: Path) -> None:
    files = [Path("a/fuze.obj"), Path("a/fuze.ply"), Path("b/fuze.obj"), Path("c/FUZE.OBJ"), Path("d/fuze.obj.2")]
    names = output_names(files, tmp_path)
    assert [n.name for n in names.values()] == [
        "fuze.obj.d3d", "fuze.ply.d3d", "fuze.obj.2.d3d", "FUZE.OBJ.3.d3d", "fuze.obj.2.2.d3d",
    ]  # fmt: skip
    assert len({n.name.lower() for n in names.values()}) == len(files)


def test_extract_dir_json_and_snapshot_show(tmp_path: Path) -> None:
    src = tmp_path / "models"
    (src / "sub").mkdir(parents=True)
    for name in ("obj/fuze.obj", "obj/fuze.obj.mtl", "ply/fuze.ply", "off/Cube.off"):
        shutil.copy(CORPUS / name, src / Path(name).name)
    shutil.copy(CORPUS / "obj/fuze.obj", src / "sub" / "fuze.obj")
    (src / "broken.stl").write_bytes(b"solid x\nfacet normal 0 0 1\n")
    out = tmp_path / "out"
    proc = cli("extract", "dir", str(src), "--recursive", "--output-dir", str(out), "--json", "--points", "512",
               "--workers", "2", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    records = {r["path"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert len(records) == 5  # the .mtl companion is not an input
    broken = records[str(src / "broken.stl")]
    assert broken["status"] == "failed" and broken["reason"] == "parse_error"
    outputs = sorted(p.name for p in out.iterdir())
    assert outputs == ["Cube.off.d3d", "fuze.obj.2.d3d", "fuze.obj.d3d", "fuze.ply.d3d"]
    assert all(r["points"] == 512 for r in records.values() if r["status"] == "ok")
    assert "extracted" in proc.stderr
    show = cli("snapshot", "show", str(out / "fuze.ply.d3d"), "--json", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    data = json.loads(show.stdout)
    assert data["geometry"]["points"] == 512 and len(data["features"]["global_features"]) == 32
    assert data["provenance"]["original_format"] == "PLY"
    human = cli("snapshot", "show", str(out / "Cube.off.d3d"), cwd=tmp_path)
    assert human.returncode == 0 and "Global features" in human.stdout and "Quality flags" in human.stdout


def test_extract_file_exact_precision_and_failure_exit_code(tmp_path: Path) -> None:
    target = tmp_path / "cube.d3d"
    proc = cli("extract", "file", str(CORPUS / "stl/unit_cube.STL"), "--output", str(target), "--points", "256",
               "--precision", "exact", "--seed", "3", "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "ok" and record["output"] == str(target)
    snap = Snapshot.load(target)
    assert snap.processing.precision == "exact" and snap.processing.seed == 3
    assert snap.geometry.points.dtype == np.float32 and snap.geometry.point_count == 256
    bad = cli("extract", "file", str(CORPUS / "iges/sample.igs"), "--json", cwd=tmp_path)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["reason"] == "empty_geometry"
