"""Point clouds stream into a bounded, seeded sample (issue 14.6); PCD headers ignore case (14.7)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.extract.core import snapshot_from_geometry
from destill3d_tui.engine.extract.load import load_geometry
from destill3d_tui.engine.extract.loaders.stream import RESERVOIR_POINTS, Reservoir
from destill3d_tui.engine.extract.types import LoadedGeometry
from destill3d_tui.engine.formats import detect_format


def _sphere(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_reservoir_is_seeded_uniform_and_independent_of_chunking() -> None:
    rows = np.c_[np.arange(10_000, dtype=np.float64), np.zeros((10_000, 2))]
    rows[7, 1] = np.nan
    whole, chunked, other = Reservoir(1000, seed=3), Reservoir(1000, seed=3), Reservoir(1000, seed=4)
    whole.add(rows)
    for part in np.array_split(rows, 37):
        chunked.add(part)
    other.add(rows)
    kept = whole.rows(3)
    assert kept.shape == (1000, 3) and np.array_equal(kept, chunked.rows(3))
    assert not np.array_equal(kept, other.rows(3))
    assert np.all(np.diff(kept[:, 0]) > 0)  # file order
    assert 4000 < kept[:, 0].mean() < 6000  # drawn from the whole stream, not its head
    assert whole.notes() == (["reservoir_sample 9999 -> 1000"], ["dropped 1 non-finite points"])


def test_a_cloud_that_fits_is_kept_whole_and_in_order() -> None:
    rows = _sphere(5000)
    sample = Reservoir(5000, seed=0)
    for part in np.array_split(rows, 3):
        sample.add(part)
    assert np.array_equal(sample.rows(3), rows) and sample.notes() == ([], [])


def _write_xyz(path: Path, rows: int) -> None:
    """``rows`` text rows: a block of 100K distinct rows written again and again (seconds, not minutes)."""
    buffer = io.BytesIO()
    np.savetxt(buffer, _sphere(100_000), fmt="%.4f", delimiter=",")
    block = buffer.getvalue()
    with path.open("wb") as fh:
        fh.write(b"# x,y,z from a scanner\n")
        for _ in range(rows // 100_000):
            fh.write(block)


HEADROOM_MB = 450  # the streaming read needs ~220 MB above the imports; the old whole-file read ~650 MB
CAPPED_LOAD = """
import json, re, resource, sys
from destill3d_tui.engine.extract.load import load_geometry
load_geometry(sys.argv[2])  # every import the reader needs happens before the cap
base = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read())[1]) * 1024
cap = base + int(sys.argv[3]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
geometry = load_geometry(sys.argv[1])
print(json.dumps({"shape": geometry.vertices.shape, "transforms": geometry.metadata.get("load_transforms")}))
"""


def test_big_xyz_streams_under_an_address_space_cap(tmp_path: Path) -> None:
    """3M rows in HEADROOM_MB above the imports: the old reader kept every row as Python floats and a
    20M-row file ran out of the worker's memory; the streaming reader's footprint does not grow with the file."""
    path, small = tmp_path / "scan.xyz", tmp_path / "small.xyz"
    _write_xyz(path, 3_000_000)
    small.write_text("0 0 0\n1 0 0\n0 1 0\n0 0 1\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CAPPED_LOAD, str(path), str(small), str(HEADROOM_MB)],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    result = json.loads(done.stdout)
    assert result["shape"] == [RESERVOIR_POINTS, 3]
    assert result["transforms"] == [f"reservoir_sample 3000000 -> {RESERVOIR_POINTS}"]


def test_the_snapshot_says_what_the_reader_kept() -> None:
    geometry = LoadedGeometry(vertices=_sphere(3000), faces=None, format="XYZ",
                              metadata={"load_transforms": ["reservoir_sample 20000000 -> 1000000"]})  # fmt: skip
    snapshot = snapshot_from_geometry(geometry)
    assert snapshot.processing.transforms[0] == "reservoir_sample 20000000 -> 1000000"


def test_binary_ply_cloud_streams_and_matches_its_records(tmp_path: Path) -> None:
    points = _sphere(1000).astype("<f4")
    properties = b"".join(b"property float " + axis + b"\n" for axis in (b"x", b"y", b"z"))
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\n" + properties + b"end_header\n"
    path = tmp_path / "cloud.ply"
    path.write_bytes(header + points.tobytes())
    geometry = load_geometry(path)
    assert geometry.format == "PLY" and geometry.faces is None
    assert np.array_equal(geometry.vertices, points.astype(np.float64))


PCD_HEADER = "# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {n}\nHEIGHT 1\n"


@pytest.mark.parametrize("fields", ["X Y Z", "x Y z"])
@pytest.mark.parametrize("data", ["ascii", "binary"])
def test_pcd_field_names_are_case_insensitive(tmp_path: Path, fields: str, data: str) -> None:
    points = _sphere(100).astype("<f4")
    head = PCD_HEADER.format(fields=fields, n=100) + f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 100\nDATA {data}\n"
    body = points.tobytes() if data == "binary" else "".join(f"{x} {y} {z}\n" for x, y, z in points).encode()
    path = tmp_path / "survey.pcd"
    path.write_bytes(head.encode() + body)
    geometry = load_geometry(path)
    assert np.allclose(geometry.vertices, points, atol=1e-6)


def test_pcd_header_keywords_are_case_insensitive(tmp_path: Path) -> None:
    text = "version 0.7\nfields x y z\nsize 4 4 4\ntype f f f\ncount 1 1 1\nwidth 4\nheight 1\npoints 4\ndata ascii\n"
    path = tmp_path / "lower"  # no extension: the content alone names it
    path.write_text(text + "0 0 0\n1 0 0\n0 1 0\n0 0 1\n")
    assert detect_format(path) == "PCD"
    assert len(load_geometry(path).vertices) == 4


def test_a_line_longer_than_a_block_is_refused_without_holding_the_file(tmp_path: Path) -> None:
    from destill3d_tui.engine.errors import FormatError
    from destill3d_tui.engine.extract.loaders.stream import TEXT_CHUNK_BYTES

    path = tmp_path / "one_line.xyz"
    path.write_bytes(b"1 2 3 " * (TEXT_CHUNK_BYTES // 6 + 1000))  # 8 MB of numbers and no line break
    with pytest.raises(FormatError, match="a line longer than"):
        load_geometry(path)
