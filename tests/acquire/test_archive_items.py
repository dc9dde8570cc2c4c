"""Each model inside an archive becomes its own result: a zip inside a Thingiverse thing (issue 13,
finding 9) and archives in a folder given to ``extract dir`` / ``queue add`` (issue 14, finding 2).
Shipped default settings (rate limits, timeouts, caps); only the fakes' addresses are configured."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.config import load_settings
from tests.acquire.hostile_archives import tar_bz2_bomb, tar_gz_of, tiny_stl, zip_of
from tests.fakes.thingiverse import FakeThingiverse

REPO = Path(__file__).resolve().parents[2]
ZIP_THING = 7_000_004  # the fake's fifth generated thing: parts_4.zip holding parts/a.stl and parts/b.stl


@pytest.fixture
def tv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeThingiverse]:
    with FakeThingiverse(n_things=5) as fake:
        monkeypatch.setenv("THINGIVERSE_API_KEY", fake.token)
        yield fake


def folder_of_archives(root: Path) -> Path:
    folder = root / "downloads"
    folder.mkdir()
    zip_of(folder / "two.zip", {"a/one.stl": tiny_stl("one"), "b/two.stl": tiny_stl("two"), "readme.txt": b"x"})
    tar_gz_of(folder / "three.tar.gz", {"x/three.stl": tiny_stl("three")})
    tar_bz2_bomb(folder / "bomb.tar.bz2")
    (folder / "plain.stl").write_bytes(tiny_stl("plain"))
    return folder


def test_each_model_in_an_archive_is_its_own_item(tv: FakeThingiverse, tmp_path: Path) -> None:
    settings = load_settings(overrides={
        "database.url": f"sqlite:///{tmp_path / 'd.db'}",
        "platforms.thingiverse.base_url": tv.url,
        "acquisition.allow_hosts": [tv.cdn.hostport],
        "extraction.target_points": 512,
        "classification.enabled": False,
    })  # fmt: skip
    d3d = Destill3D(settings)
    try:
        assert len(d3d.acquire.add_urls([f"https://www.thingiverse.com/thing:{ZIP_THING}"])) == 1  # the zip
        folder = folder_of_archives(tmp_path)
        summary = d3d.extract.from_directory(folder)  # queues the folder (archives too) and runs the queue
        rows = {r.model_id: r for r in d3d.queue.list(limit=100)}
        stored = {r.model_id: d3d.db.get(r.snapshot_id).provenance for r in rows.values() if r.snapshot_id}
        assert summary.failed == 1 and summary.stored == 6, {k: (r.stage, r.last_error) for k, r in rows.items()}
    finally:
        d3d.close()
    bomb = rows[f"local:{folder / 'bomb.tar.bz2'}"]
    assert bomb.stage == "failed" and bomb.reason == "too_large" and "200:1" in str(bomb.last_error)
    inside = {(p.source_id, p.original_filename): p for p in stored.values()}
    assert set(inside) == {
        (f"{ZIP_THING}", "parts/a.stl"), (f"{ZIP_THING}", "parts/b.stl"), (str(folder / "two.zip"), "a/one.stl"),
        (str(folder / "two.zip"), "b/two.stl"), (str(folder / "three.tar.gz"), "x/three.stl"),
        (str(folder / "plain.stl"), "plain.stl"),
    }  # fmt: skip
    assert inside[(f"{ZIP_THING}", "parts/b.stl")].license_spdx  # the thing's licence reaches every model in it
    member = inside[(str(folder / "two.zip"), "b/two.stl")]
    assert member.original_file_hash == hashlib.sha256(tiny_stl("two")).hexdigest()  # the model's, not the zip's


def test_extract_dir_gives_each_archived_model_a_record(tmp_path: Path) -> None:
    folder_of_archives(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTILL3D_")} | {"DESTILL3D_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "destill3d_tui", "extract", "dir", "downloads", "--output-dir", "out",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]  # the bomb failed; the run went on
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    got = {(Path(r["path"]).name, r.get("member"), r["status"], r["reason"]) for r in records}
    assert got == {
        ("two.zip", "a/one.stl", "ok", None), ("two.zip", "b/two.stl", "ok", None),
        ("three.tar.gz", "x/three.stl", "ok", None), ("plain.stl", None, "ok", None),
        ("bomb.tar.bz2", None, "failed", "too_large"),
    }  # fmt: skip
    assert len(list((tmp_path / "out").glob("*.d3d"))) == 4
    assert "FAILED downloads/bomb.tar.bz2: too_large" in proc.stderr


def test_packages_of_one_model_are_not_split() -> None:
    """A Sketchfab or Smithsonian archive holds one model's encodings: the worker picks its best file."""
    from destill3d_tui.engine.pipeline.archives import members_are_models

    assert [p for p in ("local", "thingiverse", "sketchfab", "smithsonian") if members_are_models(p)] == [
        "local", "thingiverse"]  # fmt: skip
