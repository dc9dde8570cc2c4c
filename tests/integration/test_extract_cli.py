"""`extract file`, `extract dir` and `snapshot show` as a user runs them."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------- paths and names as users have them

HOSTILE = "\x1b]0;pwned\x07 \x1b[2J \x1b[31mred\x9b\u202eevil.stl"
UNDECODABLE = os.fsdecode(b"caf\xe9-\xff.stl")  # Latin-1 bytes: not UTF-8
LONG = "l" * 251 + ".off"  # 255 bytes: the longest name the input can have
RAW = ("\x1b", "\x07", "\x9b", "\u202e")  # what must never reach a terminal as it is


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment with a private home (config, database, temp) for this test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTILL3D_")}
    return {**env, "DESTILL3D_HOME": str(tmp_path / "home"), "DESTILL3D_CLASSIFICATION__ENABLED": "false"}


def run(*args: str, cwd: Path, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "destill3d_tui", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=600, **kw)  # fmt: skip


def test_relative_paths_mean_the_callers_folder(tmp_path: Path) -> None:
    """As the README shows them: run from the folder the paths are relative to (not the repo)."""
    work, env = tmp_path / "work", isolated_env(tmp_path)
    (work / "models").mkdir(parents=True)
    shutil.copy(CORPUS / "stl/unit_cube.STL", work / "models")
    shutil.copy(CORPUS / "off/Cube.off", work / "models")
    shutil.copy(CORPUS / "stl/multibody.stl", work / "models" / UNDECODABLE)
    one = run("extract", "file", "models/unit_cube.STL", "--output", "cube.d3d", "--points", "256", "--json",
              cwd=work, env=env)  # fmt: skip
    assert one.returncode == 0 and json.loads(one.stdout)["status"] == "ok", one.stdout + one.stderr
    assert Snapshot.load(work / "cube.d3d").geometry.point_count == 256
    many = run("extract", "dir", "models", "--output-dir", "out", "--points", "256", "--workers", "1", "--json",
               cwd=work, env=env)  # fmt: skip
    assert many.returncode == 0, many.stdout + many.stderr
    assert sorted(p.name for p in (work / "out").iterdir()) == [
        "Cube.off.d3d", "caf_-_-d08d1b4e4ff5.stl.d3d", "unit_cube.STL.d3d"
    ]  # fmt: skip
    # into the database: the file whose name is not UTF-8 is queued and stored with the others
    db = run("--db", "d.sqlite", "--set", "extraction.target_points=256", "--set", "pipeline.workers=1",
             "extract", "dir", "models", "--json", cwd=work, env=env)  # fmt: skip
    assert db.returncode == 0, db.stdout + db.stderr
    assert json.loads(db.stdout.splitlines()[-1])["stored"] == 3
    conn = sqlite3.connect(work / "d.sqlite")
    assert ("caf\\xe9-\\xff",) in conn.execute("SELECT title FROM snapshots").fetchall()
    conn.close()
    added = run("--db", "q.sqlite", "queue", "add", "models/Cube.off", "--json", cwd=work, env=env)
    assert added.returncode == 0, added.stderr
    conn = sqlite3.connect(work / "q.sqlite")
    assert conn.execute("SELECT source_id FROM processing_queue").fetchall() == [(str(work / "models/Cube.off"),)]
    conn.close()


def test_hostile_names_print_escaped_and_long_or_odd_names_are_saved(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    sources = {"good.stl": "stl/unit_cube.STL", HOSTILE: "stl/soup.stl", UNDECODABLE: "stl/multibody.stl",
               LONG: "off/Cube.off"}  # fmt: skip
    for name, source in sources.items():
        shutil.copy(CORPUS / source, models / name)
    proc = run("extract", "dir", "models", "--output-dir", "out", "--points", "256", "--workers", "1", "--json",
               cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
    text = (proc.stdout + proc.stderr).decode("utf-8")  # all of it is valid UTF-8 ...
    assert not any(ch in text for ch in RAW), text  # ... with nothing a terminal would act on
    assert proc.returncode == 0, text
    records = {r["path"]: r for r in map(json.loads, proc.stdout.decode().splitlines())}
    assert all(r["status"] == "ok" for r in records.values()) and len(records) == 4
    hostile = "models/\\x1b]0;pwned\\x07 \\x1b[2J \\x1b[31mred\\x9b\\u202eevil.stl"
    assert {hostile, "models/caf\\xe9-\\xff.stl", "models/good.stl", f"models/{LONG}"} == set(records)
    assert f"ok {hostile} -> out/" in proc.stderr.decode()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 4 and not [n for n in names if n.endswith(".part")]
    assert all(len(os.fsencode(n)) <= 255 and n.isprintable() for n in names)


def _full_disk(limit: int) -> Callable[[], None]:
    def limit_writes() -> None:  # in the child: writes past `limit` bytes fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def test_a_failed_write_is_reported_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(CORPUS / "stl/teapot.stl", tmp_path / "models")
    proc = run("extract", "dir", "models", "--output-dir", "out", "--points", "2048", "--json", cwd=tmp_path,
               env=isolated_env(tmp_path), preexec_fn=_full_disk(4096))  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    record = json.loads(proc.stdout)
    assert record["status"] == "failed" and record["reason"] == "write_failed", record
    assert record["message"].startswith("cannot write teapot.stl.d3d: File too large")
    assert list((tmp_path / "out").iterdir()) == []  # no .d3d, no .part
