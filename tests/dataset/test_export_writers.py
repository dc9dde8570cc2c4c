"""The shard writers' threads: the bytes they write, and a failure on a writer thread reaching the
export (which then resumes to the uninterrupted result)."""

from __future__ import annotations

import errno
import json
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.export import webdataset
from destill3d_tui.engine.store.export.common import ExportRecord
from destill3d_tui.engine.store.export.shards import STATE_FILE
from destill3d_tui.engine.store.export.stream import decode_arrays
from destill3d_tui.engine.store.snapshot import Snapshot

from .test_sharded_export import bulk_store

N, SHARD = 500, 120
KNOWN: dict = {}  # what the fixture stored: owners (snapshot id -> template), truth (template -> arrays)
FAIL_AFTER = 9
"""Writes that succeed before the disk is full: past the first completed shard (train 0, closed
after the 5th or 6th) and before the last of the 12 (Parquet: a row group a batch of 50) or 18
(WebDataset: a batch, and the end marker at each close) the export makes, with shards written
two at a time."""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, family_snapshots: dict[str, list[Snapshot]]):
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('writers') / 'd3d.db'}")
    templates = [family_snapshots["teapot"][0], family_snapshots["socket"][0]]
    KNOWN["owners"] = bulk_store(store, templates, N)  # snapshot id -> template index
    KNOWN["truth"] = [decode_arrays(t.to_bytes(), False)[:2] for t in templates]
    yield DatasetService(store)
    store.close()


def test_parquet_row_groups_keep_their_clouds_when_buffers_are_reused(
    small: DatasetService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups of 7 rows: the cloud buffers go round many times; every row still has its own cloud."""
    from destill3d_tui.engine.store.export import parquet

    monkeypatch.setattr(parquet, "ROWS_PER_GROUP", 7)
    small.export("parquet", tmp_path / "p", shard_rows=SHARD, batch=50)
    seen = 0
    for path in sorted((tmp_path / "p" / "data").glob("*.parquet")):
        assert pq.ParquetFile(path).metadata.num_row_groups > 2
        table = pq.read_table(path, columns=["snapshot_id", "points", "normals"])
        points = table.column("points").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 2048, 3)
        normals = table.column("normals").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 2048, 3)
        for sid, p, n in zip(table.column("snapshot_id").to_pylist(), points, normals, strict=True):
            want = KNOWN["truth"][KNOWN["owners"][sid]]
            assert np.array_equal(p, want[0]) and np.array_equal(n, want[1]), sid
            seen += 1
    assert seen == N


def _records() -> list[ExportRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        key = "é" + "x" * 120 if i == 3 else "y" * 95 if i == 4 else str(uuid.UUID(int=int(rng.integers(0, 2**62))))
        views = rng.integers(0, 255, (2, 4, 4), dtype=np.uint8) if i == 5 else None
        points = rng.random((64, 3), dtype=np.float32)
        out.append(ExportRecord(key, points if i != 6 else points.astype(np.float64), rng.random((64, 3), np.float32),
                                "chair", i % 3, "train", {"title": "tê" * i, "confidence": 0.5}, views))  # fmt: skip
    return out


def test_webdataset_shard_writes_the_bytes_of_sample_and_header(tmp_path: Path) -> None:
    records = _records()
    expected = b""
    for record in records:
        for name, data in webdataset.sample(record):
            expected += webdataset.header(name, len(data)) + data + b"\0" * (-len(data) % webdataset.BLOCK)
    expected += b"\0" * (2 * webdataset.BLOCK)
    shard = webdataset.WebDatasetShard(tmp_path / "a.tar", None, "train", len(records))  # type: ignore[arg-type]
    shard.write(records[:17])
    shard.write(records[17:])
    shard.close()
    assert (tmp_path / "a.tar").read_bytes() == expected
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert len(tar.getmembers()) == 4 * len(records) + 1  # one object has views


@pytest.mark.parametrize("short", ["three bytes a call", "one buffer a call (no writev)"])
def test_write_all_finishes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short: str) -> None:
    real = webdataset.os.write
    if short.startswith("three"):
        monkeypatch.setattr(webdataset, "_writev", lambda fd, bufs: real(fd, bytes(bufs[0])[:3]))
    else:
        monkeypatch.setattr(webdataset, "_writev", webdataset._write_one)
    fd = webdataset.os.open(tmp_path / "f", webdataset.os.O_WRONLY | webdataset.os.O_CREAT)
    webdataset.write_all(fd, [b"", b"abcdefgh", np.arange(4, dtype=np.uint8), b"", b"xy", b""])
    webdataset.os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcdefgh\0\1\2\3xy"


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_a_writer_thread_failure_stops_the_export_and_it_resumes(
    small: DatasetService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    whole = small.export(fmt, tmp_path / "whole", shard_rows=SHARD, batch=50)
    calls = {"n": 0}

    def full_disk(real):
        def fail(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > FAIL_AFTER:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return fail

    if fmt == "webdataset":
        monkeypatch.setattr(webdataset, "write_all", full_disk(webdataset.write_all))
    else:
        monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk(pq.ParquetWriter.write_table))
    with pytest.raises(OSError, match="No space left"):
        small.export(fmt, tmp_path / "part", shard_rows=SHARD, batch=50)
    assert not list((tmp_path / "part").rglob("*.partial"))  # the open shards were removed
    assert json.loads((tmp_path / "part" / STATE_FILE).read_text())["done"]  # shards before the failure stay
    monkeypatch.undo()
    second = small.export(fmt, tmp_path / "part", shard_rows=SHARD, batch=50)
    assert second.count == whole.count == N and second.split_counts == whole.split_counts
    files = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "part") for p in (tmp_path / "part").rglob("*") if p.is_file())
    for rel in files:
        a, b = tmp_path / "whole" / rel, tmp_path / "part" / rel
        if rel.suffix == ".parquet":
            assert pq.read_table(a).equals(pq.read_table(b))
        elif rel.name != "README.md":
            assert a.read_bytes() == b.read_bytes(), rel


@pytest.mark.parametrize("n", [1, 2, 3, 5, 2047, 2048])
def test_compiled_decode_equals_the_codec_on_any_bits(n: int) -> None:
    from destill3d_tui.engine.store import quantize as q
    from destill3d_tui.engine.store.export import kernels

    rng = np.random.default_rng(n)
    points = rng.integers(0, 256, (n * 3 * 12 + 7) // 8, dtype=np.uint8).tobytes()
    normals = rng.integers(0, 256, n * 3, dtype=np.uint8).tobytes()
    assert np.array_equal(kernels.points(points, n), q.dequantize(points, -1.0, 1.0, 12, n * 3).reshape(n, 3))
    assert np.array_equal(kernels.normals(normals, n), q.decode_normals(normals, n))
