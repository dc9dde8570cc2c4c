"""Sharded, streaming exports of a few thousand snapshots: every format read back by the library
its users use, shard boundaries, resume after an interruption, and memory that stays flat."""

from __future__ import annotations

import json
import threading
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.export import common, selection
from destill3d_tui.engine.store.export.shards import STATE_FILE
from destill3d_tui.engine.store.export.stream import decode_arrays
from destill3d_tui.engine.store.service import insert_snapshot
from destill3d_tui.engine.store.snapshot import Prediction, Snapshot

N = 1600
LABELS = ("chair", "lamp", "vase", "table", "bowl")
PLATFORMS = ("thingiverse", "github", "sketchfab", "local")
SHARD = 300


def bulk_store(store: Store, templates: list[Snapshot], n: int) -> dict[str, int]:
    """n rows through the store's own insert (copies of real snapshots, varied label/platform/format).

    Returns snapshot_id -> template index (the blob each row holds)."""
    blobs = [t.to_bytes() for t in templates]
    copies = [Snapshot.from_bytes(b) for b in blobs]  # one object per template, its fields reset per row
    rng = np.random.default_rng(0)
    out: dict[str, int] = {}
    with store.atomic():
        for i in range(n):
            t = i % len(templates)
            snap = copies[t]
            snap.snapshot_id = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i, version=4))
            snap.model_id = f"m{i}"
            p = snap.provenance
            p.platform, p.license, p.license_spdx = PLATFORMS[i % 4], "MIT License", "MIT"
            p.original_file_hash, p.original_format, p.title = f"{i:064x}", ("STL", "OBJ", "PLY")[i % 3], f"obj {i}"
            snap.predictions = [Prediction(label=LABELS[(i * 7) % 5], confidence=0.5 + (i % 50) / 100,
                                           taxonomy="modelnet40", model_name="m")]  # fmt: skip
            insert_snapshot(store, snap, blobs[t])
            out[snap.snapshot_id] = t
    return out


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, family_snapshots: dict[str, list[Snapshot]]):
    path = tmp_path_factory.mktemp("big") / "d3d.db"
    store = Store(f"sqlite:///{path}")
    templates = [family_snapshots["teapot"][0], family_snapshots["socket"][0]]
    owners = bulk_store(store, templates, N)
    truth = [decode_arrays(t.to_bytes(), False)[:2] for t in templates]
    yield DatasetService(store), owners, truth
    store.close()


def _parquet(out: Path) -> dict[str, tuple[str, np.ndarray]]:
    """pyarrow reads every shard; Hugging Face ``datasets`` finds the splits in the folder as it is."""
    import datasets

    streamed = datasets.load_dataset(str(out), streaming=True)  # streaming: no Arrow cache of the clouds
    got = {}
    for path in sorted(out.glob("data/*.parquet")):
        table = pq.read_table(path, columns=["snapshot_id", "points"])
        points = table.column("points").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 2048, 3)
        for sid, cloud in zip(table.column("snapshot_id").to_pylist(), points, strict=True):
            got[sid] = (path.name.split("-")[0], cloud)
    for split, ds in streamed.items():
        row = next(iter(ds))
        assert got[row["snapshot_id"]][0] == {"validation": "val"}.get(split, split)
        np.testing.assert_array_equal(np.array(row["points"], np.float32), got[row["snapshot_id"]][1])
    assert {{"validation": "val"}.get(s, s) for s in streamed} == {"train", "val", "test"}
    return got


def _webdataset(out: Path) -> dict[str, tuple[str, np.ndarray]]:
    import webdataset as wds

    got = {}
    for path in sorted(out.glob("*.tar")):
        for sample in wds.WebDataset(str(path), shardshuffle=False).decode():
            got[sample["__key__"]] = (sample["json"]["split"], sample["points.npy"])
    return got


def _hdf5(out: Path) -> dict[str, tuple[str, np.ndarray]]:
    import h5py

    got = {}
    for split in ("train", "val", "test"):
        for name in (out / f"{split}_files.txt").read_text().split():  # what the ModelNet40 h5 loaders read
            with h5py.File(out / name) as f:
                assert f["data"].shape[0] == f["label"].shape[0] <= SHARD
                for sid, points in zip(f["snapshot_ids"][:], f["data"][:], strict=True):
                    got[sid.decode()] = (split, points)
    return got


def _numpy(out: Path) -> dict[str, tuple[str, np.ndarray]]:
    got = {}
    for path in sorted(out.glob("*.npz")):
        with np.load(path, allow_pickle=False) as d:
            for sid, points in zip(d["snapshot_ids"], d["points"], strict=True):
                got[str(sid)] = (path.name.split("-")[0], points)
    return got


READ = {"parquet": _parquet, "webdataset": _webdataset, "hdf5": _hdf5, "numpy": _numpy}


@pytest.mark.parametrize("fmt", sorted(READ))
def test_sharded_export_reads_back_every_object_once(big, tmp_path: Path, fmt: str) -> None:
    service, owners, truth = big
    result = service.export(fmt, tmp_path / "out", shard_rows=SHARD)
    assert result.count == N and not result.skipped
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    for split, n in result.split_counts.items():
        shards = index["splits"][split]
        assert len(shards) == -(-n // SHARD) and sum(s["rows"] for s in shards) == n
        assert all(s["rows"] == SHARD for s in shards[:-1])
        assert all((tmp_path / "out" / s["file"]).is_file() for s in shards)
    got = READ[fmt](tmp_path / "out")
    assert set(got) == set(owners)
    assert Counter(split for split, _ in got.values()) == result.split_counts
    for sid in list(owners)[:: N // 40]:
        np.testing.assert_array_equal(got[sid][1], truth[owners[sid]][0])
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.name.startswith(".") or p.suffix == ".partial"]
    assert leftovers == []
    manifest = json.loads((tmp_path / "out" / "attribution.json").read_text())["objects"]
    assert len(manifest) == N and {e["snapshot_id"] for e in manifest} == set(owners)


class CancelAfter(threading.Event):
    """A cancel token that reads as set from its ``n``-th check on (the export checks once a batch)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0 or super().is_set()


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_interrupted_export_resumes_to_the_uninterrupted_result(big, tmp_path: Path, fmt: str) -> None:
    service, _, _ = big
    whole = service.export(fmt, tmp_path / "whole", shard_rows=SHARD, batch=200)
    first = service.export(fmt, tmp_path / "part", shard_rows=SHARD, batch=200, cancel=CancelAfter(4))
    assert first.interrupted and not (tmp_path / "part" / "README.md").exists()
    state = json.loads((tmp_path / "part" / STATE_FILE).read_text())
    assert sum(len(s) for s in state["done"].values()) >= 1  # at least the first train shard completed
    assert not list((tmp_path / "part").rglob("*.partial"))  # the open shards were removed, not left half
    second = service.export(fmt, tmp_path / "part", shard_rows=SHARD, batch=200)
    assert not second.interrupted and second.split_counts == whole.split_counts
    _same_export(tmp_path / "whole", tmp_path / "part")


def _same_export(whole: Path, part: Path) -> None:
    """The same files with the same contents (Parquet: the same rows; the card aside)."""
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(part) for p in part.rglob("*") if p.is_file())
    for rel in files:
        a, b = whole / rel, part / rel
        if rel.suffix == ".parquet":  # row groups follow the batches, so compare the rows
            assert pq.read_table(a).equals(pq.read_table(b))
        elif rel.name != "README.md":  # the card's only difference would be the run's options
            assert a.read_bytes() == b.read_bytes(), rel


def _shard_ids(out: Path) -> dict[str, list[list[str]]]:
    """split -> its shards in index order -> their snapshot ids in file order (read by pyarrow / webdataset)."""
    import webdataset as wds

    got: dict[str, list[list[str]]] = {}
    for split, shards in json.loads((out / "index.json").read_text())["splits"].items():
        for shard in shards:
            path = out / shard["file"]
            if path.suffix == ".parquet":
                ids = pq.read_table(path, columns=["snapshot_id"]).column("snapshot_id").to_pylist()
            else:
                ids = [sample["__key__"] for sample in wds.WebDataset(str(path), shardshuffle=False)]
            assert len(ids) == shard["rows"]
            got.setdefault(split, []).append(ids)
    return got


def _completed(out: Path) -> dict[str, tuple[int, int]]:
    """The shard files an interrupted export completed: name -> (inode, mtime), to see them untouched."""
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*") if p.suffix in (".parquet", ".tar")}  # fmt: skip


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_two_shards_in_flight_each_hold_a_block_of_their_split_in_key_order(big, tmp_path: Path, fmt: str) -> None:
    """Two shards of a split are written at once; shard i still holds the i-th block of the split in key order."""
    service, owners, _ = big
    shard = 130  # train: 1,280 objects in 10 shards, the last of 110; val, test: 160 in 2
    result = service.export(fmt, tmp_path / "out", shard_rows=shard, batch=50)
    rowid = dict(service.store.execute("SELECT snapshot_id, rowid FROM snapshots").fetchall())
    seen: list[str] = []
    for split, shards in _shard_ids(tmp_path / "out").items():
        assert [len(ids) for ids in shards[:-1]] == [shard] * (len(shards) - 1) and 0 < len(shards[-1]) <= shard
        keys = [rowid[sid] for ids in shards for sid in ids]
        assert keys == sorted(keys), split  # ascending within each shard and from one shard to the next
        assert len(shards) == -(-result.split_counts[split] // shard)
        seen += [sid for ids in shards for sid in ids]
    assert len(seen) == N and set(seen) == set(owners)  # every object once


def _interrupted(service: DatasetService, out: Path, fmt: str, shard: int, checks: int) -> dict:
    first = service.export(fmt, out, shard_rows=shard, batch=200, cancel=CancelAfter(checks))
    assert first.interrupted and not list(out.rglob("*.partial"))  # the open shards were removed
    return json.loads((out / STATE_FILE).read_text())


def _done(state: dict) -> dict[str, list[int]]:
    return {split: sorted(d["index"] for d in shards) for split, shards in state["done"].items()}


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_resume_writes_exactly_the_missing_shards_when_a_later_one_completed(big, tmp_path: Path, fmt: str) -> None:
    """Train: 450, 450 and 380 objects. Shard 1 is written beside shard 0, then beside shard 2, which is
    smaller and completes first; cancelled then, the resumed export writes the missing shards and
    nothing else, and equals an uninterrupted export."""
    service, _, _ = big
    whole = service.export(fmt, tmp_path / "whole", shard_rows=450, batch=200)
    state = _interrupted(service, tmp_path / "part", fmt, shard=450, checks=7)
    assert _done(state)["train"] == [0, 2]  # a gap: shard 2 complete, shard 1 was partial
    kept = _completed(tmp_path / "part")
    second = service.export(fmt, tmp_path / "part", shard_rows=450, batch=200)
    assert not second.interrupted and second.split_counts == whole.split_counts
    after = _completed(tmp_path / "part")
    assert {name: after[name] for name in kept} == kept  # completed shards were not written again
    missing = {s: sorted(set(range(n)) - set(_done(state).get(s, []))) for s, n in state["totals"].items()}
    written = {n for n in after if n not in kept}
    assert len(written) == sum(map(len, missing.values())) and any("train-00001" in n for n in written)
    _same_export(tmp_path / "whole", tmp_path / "part")


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_a_state_file_of_the_earlier_layout_still_resumes(big, tmp_path: Path, fmt: str) -> None:
    """Completed shards as a list from shard 0, no indexes and no key ranges (what exports wrote before
    two shards of a split were written at once): the missing shards are planned after the last one."""
    service, _, _ = big
    whole = service.export(fmt, tmp_path / "whole", shard_rows=400, batch=200)
    state = _interrupted(service, tmp_path / "part", fmt, shard=400, checks=3)
    assert _done(state) == {"train": [0]}
    del state["ranges"]
    for shards in state["done"].values():
        for d in shards:
            del d["index"]
    (tmp_path / "part" / STATE_FILE).write_text(json.dumps(state))
    kept = _completed(tmp_path / "part")
    second = service.export(fmt, tmp_path / "part", shard_rows=400, batch=200)
    assert not second.interrupted and second.split_counts == whole.split_counts
    assert {name: _completed(tmp_path / "part")[name] for name in kept} == kept
    _same_export(tmp_path / "whole", tmp_path / "part")


def test_resume_refuses_other_options(big, tmp_path: Path) -> None:
    service, _, _ = big
    service.export("webdataset", tmp_path / "o", shard_rows=SHARD, batch=200, cancel=CancelAfter(2))
    with pytest.raises(common.ExportError, match="other options"):
        service.export("webdataset", tmp_path / "o", shard_rows=SHARD, split="0.5:0.5:0")


def _peak(service: DatasetService, out: Path, **kwargs) -> tuple[int, int]:
    tracemalloc.start()
    try:
        result = service.export("numpy", out, shard_rows=40, batch=100, **kwargs)
        return result.count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_the_export_grows(big, tmp_path: Path) -> None:
    """Four times the objects, about the same peak: bounded by batch + shard, not by the dataset."""
    service, _, _ = big
    small_n, small = _peak(service, tmp_path / "a", platform="github")
    large_n, large = _peak(service, tmp_path / "b")
    assert (small_n, large_n) == (N // 4, N)
    # the old exporter held every NumPy object in memory: 1600 x 48 KB = 79 MB here
    assert large < 1.2 * small + 2_000_000 and large < 30_000_000, (small, large)


def test_vectorised_splits_equal_assign_splits() -> None:
    rng = np.random.default_rng(1)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) * 7919, version=4)) for _ in range(3000)]
    labels = [f"c{rng.integers(0, 9)}" for _ in ids]
    expected = common.assign_splits(zip(ids, labels, strict=True), (0.7, 0.2, 0.1))
    names = sorted(set(labels))
    codes = selection.assign_splits(np.array([selection.id_hash(s) for s in ids], np.uint64),
                                    np.array([names.index(lbl) for lbl in labels], np.int32), (0.7, 0.2, 0.1))
    assert [common.SPLIT_NAMES[c] for c in codes] == [expected[s] for s in ids]


@pytest.mark.parametrize("precision", ["compact", "exact"])
def test_export_decoder_equals_the_codec(family_snapshots: dict[str, list[Snapshot]], precision: str) -> None:
    snap = family_snapshots["fandisk"][0]
    snap = Snapshot.from_bytes(snap.to_bytes())
    snap.geometry.views = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    blob = snap.to_bytes(precision)
    full = Snapshot.from_bytes(blob).geometry
    points, normals, views = decode_arrays(blob, True)
    assert np.array_equal(points, full.points) and np.array_equal(normals, full.normals)
    assert np.array_equal(views, full.views) and decode_arrays(blob, False)[2] is None


def test_webdataset_members_are_what_numpy_and_tarfile_write(tmp_path: Path) -> None:
    import io
    import tarfile

    from destill3d_tui.engine.store.export.webdataset import BLOCK, header, npy_bytes

    for array in (np.zeros((2048, 3), np.float32), np.arange(768, dtype=np.uint8).reshape(3, 16, 16)):
        saved = io.BytesIO()
        np.save(saved, array)
        assert npy_bytes(array) == saved.getvalue()
    for name, size in (("k.points.npy", 100), ("x" * 100, 0), ("é" + "y" * 150, 513)):
        data = b"z" * size
        archive = header(name, size) + data + b"\0" * (-size % BLOCK) + b"\0" * (2 * BLOCK)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            [member] = tar.getmembers()
            assert (member.name, member.size, tar.extractfile(member).read()) == (name, size, data)


def test_cli_export_shards_and_reports_its_rate(big, tmp_path: Path, capsys) -> None:
    from destill3d_tui.cli import main

    service, _, _ = big
    db = service.store.database.database
    code = main(["--db", db, "db", "export", "--format", "webdataset", "--output", str(tmp_path / "w"),
                 "--platform", "github", "--shard-rows", "100"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and f"exported {N // 4} objects" in out and "/s)" in out
    assert len(list((tmp_path / "w").glob("train-*-of-00004.tar"))) == 4  # 320 train objects, 100 a shard


def test_a_damaged_blob_is_left_out_and_counted(store: Store, family_snapshots: dict[str, list[Snapshot]],
                                                tmp_path: Path) -> None:  # fmt: skip
    from .conftest import store_snapshot

    ids = [store_snapshot(store, s, label="vase", license_spdx="MIT") for s in family_snapshots["teapot"]]
    store.execute("UPDATE snapshots SET snapshot_data = ? WHERE snapshot_id = ?", (b"D3D\x01\x00not lz4", ids[1]))
    result = DatasetService(store).export("webdataset", tmp_path / "w", split="1:0:0")
    assert result.count == 2 and result.skipped == {"snapshot unreadable (damaged blob)": 1}
    index = json.loads((tmp_path / "w" / "index.json").read_text())
    assert [s["rows"] for s in index["splits"]["train"]] == [2]
    assert set(_webdataset(tmp_path / "w")) == {ids[0], ids[2]}
