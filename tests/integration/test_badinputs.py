"""The bad-input corpus through `destill3d-tui extract dir --json`, run as a real subprocess.

Every file must behave as its manifest class requires (../shared/badinputs/README.md), the run
must never die, nothing may be written outside the output dir, no snapshot may hold NaN/inf,
and the loopback canary HTTP server must get no request.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.store.snapshot import Snapshot
from tests.acquire import hostile_archives
from tests.fakes.server import FakeServer
from tests.integration.hostile_inputs import CASES as HOSTILE
from tests.integration.hostile_inputs import write_all as write_hostile_inputs

BADINPUTS = Path(__file__).resolve().parents[2].parent / "shared" / "badinputs"
TIMEOUT_S = 20
EXTRACTION_REASONS = {"parse_error", "format_unsupported", "empty_geometry", "non_finite", "degenerate",
                      "reference_outside_item", "too_large", "tessellation_failed", "unsafe_archive"}  # fmt: skip
ALLOWED = {
    "reject": {"parse_error", "format_unsupported", "unsafe_archive"},
    "reject_or_sanitize": EXTRACTION_REASONS,
    "resource_limit": {"too_large", "memory_limit", "timeout", "archive_bomb"},
    "sandbox": {"reference_outside_item", "unsafe_archive", "format_unsupported"},
    "hang_guard": EXTRACTION_REASONS | {"timeout"},
    "crash_guard": {"parser_crashed", "parse_error"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os

    root = tmp_path_factory.mktemp("bad")
    work = root / "a" / "b" / "work"  # ../../ escapes from here land inside root, where we look
    server = FakeServer().start()  # the canary: answers 404, records every request
    canary = server.url
    subprocess.run([sys.executable, str(BADINPUTS / "make_bad_inputs.py"), str(work / "in"), "--canary-url", canary],
                   check=True, capture_output=True)  # fmt: skip
    hostile_archives.write_cases(work / "in")
    write_hostile_inputs(work / "in")  # the readers' own cases (issue 14), beside the shared ones
    home = root / "home"
    before = {p for p in root.rglob("*")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTILL3D_")} | {"DESTILL3D_HOME": str(home)}
    cmd = [sys.executable, "-m", "destill3d_tui", "--set", f"extraction.timeout_s={TIMEOUT_S}",
           "--set", "extraction.memory_limit_mb=3072", "extract", "dir", str(work / "in"), "--pattern", "*",
           "--output-dir", str(work / "out"), "--json", "--workers", "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    server.stop()
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    manifest = json.loads((work / "in" / "manifest.json").read_text())
    return {"proc": proc, "records": {Path(r["path"]).name: r for r in records}, "manifest": manifest,
            "root": root, "work": work, "home": home, "before": before, "count": len(records),
            "canary": server}  # fmt: skip


def test_run_finishes_with_one_record_per_file(run: dict) -> None:
    proc = run["proc"]
    assert proc.returncode == 1, proc.stderr[-2000:]  # some files failed, as they must; the run did not die
    inputs = [p for p in (run["work"] / "in").iterdir()]
    assert run["count"] == len(inputs)
    for record in run["records"].values():
        assert set(record) - {"member"} == {"path", "status", "reason", "message", "output", "points", "ms"}
        assert record["status"] in ("ok", "failed")
        assert record["status"] == "ok" or (record["reason"] and record["message"])


def _cases() -> list[dict]:
    import subprocess as sp
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sp.run([sys.executable, str(BADINPUTS / "make_bad_inputs.py"), tmp], check=True, capture_output=True)
        return json.loads((Path(tmp) / "manifest.json").read_text())["files"]


QUICK_REFUSAL_MS = 10_000  # counted, not expanded: well under the 20 s timeout even with two busy workers
CASES = _cases() + [{"file": name, "expect": expect, "reason": reason} for name, _, expect, reason, _ in HOSTILE]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_file_behaves_as_its_class_requires(run: dict, case: dict) -> None:
    record = run["records"][case["file"]]
    expect = case["expect"]
    if expect == "accept":
        assert record["status"] == "ok", record
        assert record["points"] == 2048 and Path(record["output"]).is_file()
        return
    if expect in ("reject_or_sanitize", "hang_guard") and record["status"] == "ok" and not case.get("reason"):
        return  # stored with the bad parts dropped; test_no_nan_in_any_snapshot checks the arrays
    assert record["status"] == "failed", record
    allowed = ALLOWED[expect]
    if case["file"] == "zip_bomb_nested_3_levels.zip":
        allowed = allowed | {"format_unsupported"}  # archives inside archives are never unpacked
    if case.get("reason"):  # the readers' own cases name the one reason they give, and give it quickly
        allowed = {case["reason"]}
        assert record["ms"] is not None and record["ms"] < QUICK_REFUSAL_MS, record
    assert record["reason"] in allowed, record
    if expect == "hang_guard":
        assert record["ms"] is not None and record["ms"] < (TIMEOUT_S + 10) * 1000


@pytest.mark.parametrize("name", sorted(hostile_archives.CASES))
def test_our_hostile_archives(run: dict, name: str) -> None:
    """Archive bombs are refused with too_large while the archive streams, in a worker, quickly."""
    record = run["records"][name]
    assert (record["status"], record["reason"]) == ("failed", hostile_archives.CASES[name]), record
    assert record["ms"] is not None and record["ms"] < 10_000  # the old code decompressed for 10-90 s


def test_no_nan_in_any_snapshot(run: dict) -> None:
    outputs = sorted((run["work"] / "out").glob("*.d3d"))
    assert len(outputs) == sum(r["status"] == "ok" for r in run["records"].values()) >= 14
    for path in outputs:
        snap = Snapshot.load(path)
        g, f = snap.geometry, snap.features
        for array in (g.points, g.normals, g.curvature, g.density, f.global_features):
            assert array is None or np.isfinite(array).all(), path.name
        numbers = [*g.centroid, g.scale, f.surface_area, f.volume, *f.bbox_min, *f.bbox_max]
        assert all(math.isfinite(v) for v in numbers), path.name


def test_nothing_written_outside_the_output_dir(run: dict) -> None:
    out, home = run["work"] / "out", run["home"]
    after = {p for p in run["root"].rglob("*")}
    new = {p for p in after - run["before"] if p not in (out, home) and out not in p.parents and home not in p.parents}
    assert new == set()
    assert [p for p in run["root"].rglob("destill3d_*")] == []
    leftovers = [p for p in home.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers  # item temp dirs are removed


def test_canary_got_no_request(run: dict) -> None:
    assert run["records"]["gltf_buffer_uri_http_canary.gltf"]["reason"] == "reference_outside_item"
    assert run["canary"].requests == []
