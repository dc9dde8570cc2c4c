"""Every export format, read back by its real reader, equals the database; splits and licences."""

from __future__ import annotations

import glob
import json
import struct
from collections import Counter
from pathlib import Path

import crc32c
import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from destill3d_tui.engine.events import EventBus, ExportFinished, ExportProgressed
from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.export import common
from destill3d_tui.engine.store.export.common import ExportError
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot

# family -> (platform, licence string, SPDX id); the last two are refused by every policy
LICENCES = {
    "teapot": ("thingiverse", "Creative Commons - Attribution", "CC-BY-4.0"),
    "socket": ("sketchfab", "CC Attribution-NonCommercial", "CC-BY-NC-4.0"),
    "fandisk": ("github", "MIT License", "MIT"),
    "featuretype": ("local", "", ""),
}


@pytest.fixture
def dataset(store: Store, family_snapshots: dict[str, list[Snapshot]]) -> DatasetService:
    """36 labelled objects in four licence groups + 2 refused ones."""
    for name, snaps in family_snapshots.items():
        platform, raw, spdx = LICENCES[name]
        for n, snap in enumerate(snaps * 3):
            copy = clone(snap) if n >= len(snaps) else snap
            store_snapshot(store, copy, platform=platform, label=name, confidence=0.5 + n / 20,
                           license=raw, license_spdx=spdx, title=f"{name} #{n}")
    teapot = family_snapshots["teapot"][0]
    store_snapshot(store, clone(teapot), platform="sketchfab", label="teapot", license="Standard",
                   license_spdx="LicenseRef-Sketchfab-Standard")
    store_snapshot(store, clone(teapot), platform="thingiverse", label="teapot", license="", license_spdx="")
    return DatasetService(store, events=EventBus())


def _db_arrays(store: Store) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    rows = store.execute("SELECT snapshot_id, snapshot_data, label FROM snapshots").fetchall()
    out = {}
    for sid, blob, label in rows:
        snap = Snapshot.from_bytes(bytes(blob))
        out[sid] = (snap.geometry.points, snap.geometry.normals, label)
    return out


def _read_hdf5(out: Path) -> dict[str, dict]:
    got = {}
    for path in sorted(glob.glob(str(out / "ply_data_*.h5"))):  # the DGCNN loader's glob
        split = Path(path).stem[len("ply_data_") : -1]
        with h5py.File(path, "r") as f:
            names = [n.decode() for n in f["label_names"][:]]
            data, label = f["data"][:].astype("float32"), f["label"][:].astype("int64")
            assert np.array_equal(data, f["points"][:]) and np.array_equal(label[:, 0], f["labels"][:])
            assert f["points"].shape[1:] == (2048, 3) and f["points"].dtype == np.float32
            for i, sid in enumerate(f["snapshot_ids"][:]):
                meta = json.loads(f["metadata"][i])
                got[sid.decode()] = {"points": f["points"][i], "normals": f["normals"][i],
                                     "label": names[f["labels"][i]], "split": split, "meta": meta}
        assert Path(path).name in (out / f"{split}_files.txt").read_text().split()
    return got


def _read_numpy(out: Path) -> dict[str, dict]:
    got = {}
    for path in sorted(out.glob("*.npz")):  # <split>-00000-of-00001.npz
        with np.load(path, allow_pickle=False) as d:
            for i, sid in enumerate(d["snapshot_ids"]):
                got[str(sid)] = {"points": d["points"][i], "normals": d["normals"][i], "split": _split_of(path),
                                 "label": str(d["label_names"][d["labels"][i]]), "meta": json.loads(d["metadata"][i])}
    return got


def _read_parquet(out: Path) -> dict[str, dict]:
    got = {}
    for path in sorted(out.glob("data/*.parquet")):  # the Hub's layout: data/<split>-00000-of-00001.parquet
        table = pq.read_table(path)
        points = table.column("points").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 2048, 3)
        normals = table.column("normals").combine_chunks().flatten().flatten().to_numpy().reshape(-1, 2048, 3)
        for i, row in enumerate(table.select(["snapshot_id", "label", "license_spdx", "metadata"]).to_pylist()):
            got[row["snapshot_id"]] = {"points": points[i], "normals": normals[i], "label": row["label"],
                                       "split": _split_of(path), "meta": json.loads(row["metadata"])}
            assert row["license_spdx"] == got[row["snapshot_id"]]["meta"]["license_spdx"]
    return got


def _split_of(shard: Path) -> str:
    return shard.name.split("-")[0]


def _check_framing(path: Path) -> int:
    """Every record's length and data CRCs, checked independently of the writer."""

    def masked(data: bytes) -> int:
        crc = crc32c.crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    data, pos, count = path.read_bytes(), 0, 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        assert struct.unpack_from("<I", data, pos + 8)[0] == masked(data[pos : pos + 8])
        body = data[pos + 12 : pos + 12 + length]
        assert struct.unpack_from("<I", data, pos + 12 + length)[0] == masked(body)
        pos, count = pos + 16 + length, count + 1
    assert pos == len(data)
    return count


def _read_tfrecord(out: Path) -> dict[str, dict]:
    from tfrecord.reader import tfrecord_loader

    got = {}
    spec = {"points": "float", "normals": "float", "label": "int", "label_name": "byte", "snapshot_id": "byte",
            "metadata": "byte", "num_points": "int"}
    for path in sorted(out.glob("*.tfrecord")):
        n = 0
        for ex in tfrecord_loader(str(path), None, spec):
            sid = bytes(ex["snapshot_id"]).decode()
            got[sid] = {"points": ex["points"].reshape(-1, 3), "normals": ex["normals"].reshape(-1, 3),
                        "label": bytes(ex["label_name"]).decode(), "split": _split_of(path),
                        "meta": json.loads(bytes(ex["metadata"]))}
            assert int(ex["num_points"][0]) == 2048
            n += 1
        assert _check_framing(path) == n
    return got


def _read_modelnet(out: Path) -> dict[str, dict]:
    """What Pointnet_Pointnet2_pytorch's ModelNetDataLoader does, then map files back via the manifest."""
    classes = [line.rstrip() for line in (out / "modelnet40_shape_names.txt").open()]
    where = {e["item"]: e["snapshot_id"] for e in json.loads((out / "attribution.json").read_text())["objects"]}
    got = {}
    for split in ("train", "test", "val"):
        shape_ids = [line.rstrip() for line in (out / f"modelnet40_{split}.txt").open()]
        for shape_id in shape_ids:
            shape_name = "_".join(shape_id.split("_")[0:-1])
            assert shape_name in classes
            points = np.loadtxt(out / shape_name / f"{shape_id}.txt", delimiter=",").astype(np.float32)
            sid = where[f"{shape_name}/{shape_id}.txt"]
            got[sid] = {"points": points[:, :3], "normals": points[:, 3:], "label": shape_name, "split": split}
    return got


def _read_webdataset(out: Path) -> dict[str, dict]:
    """What a PyTorch pipeline does: the webdataset package streams the tar shards."""
    import webdataset as wds

    got = {}
    for path in sorted(out.glob("*.tar")):
        for sample in wds.WebDataset(str(path), shardshuffle=False).decode():
            meta = sample["json"]
            assert int(sample["cls"]) == meta["label_id"] and meta["snapshot_id"] == sample["__key__"]
            got[sample["__key__"]] = {"points": sample["points.npy"], "normals": sample["normals.npy"],
                                      "label": meta["label"], "split": _split_of(path), "meta": meta}
    return got


READERS = {"hdf5": _read_hdf5, "numpy": _read_numpy, "parquet": _read_parquet, "tfrecord": _read_tfrecord,
           "modelnet": _read_modelnet, "webdataset": _read_webdataset}


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_export_reads_back_equal_to_database(dataset: DatasetService, tmp_path: Path, fmt: str) -> None:
    events: list = []
    dataset.events.subscribe(events.append)
    result = dataset.export(fmt, tmp_path / "out", split="0.8:0.1:0.1")
    got = READERS[fmt](tmp_path / "out")
    truth = _db_arrays(dataset.store)
    assert result.count == 36 and len(got) == 36 and result.skipped_total == 2
    tol = 0.0  # float32 everywhere; ModelNet text uses 9 significant digits, which round-trip
    for sid, item in got.items():
        points, normals, label = truth[sid]
        np.testing.assert_allclose(item["points"], points, atol=tol, rtol=0)
        np.testing.assert_allclose(item["normals"], normals, atol=tol, rtol=0)
        assert item["label"] == label
        if "meta" in item:
            assert item["meta"]["title"].startswith(label)
    assert Counter(i["split"] for i in got.values()) == result.split_counts
    manifest = json.loads((tmp_path / "out" / "attribution.json").read_text())["objects"]
    assert {e["snapshot_id"] for e in manifest} == set(got)
    assert all(e["author"] == "Ada Author" and e["source_url"] for e in manifest)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "36 objects in 4 classes" in card and "CC-BY-NC-4.0" in card and "LicenseRef-Sketchfab-Standard" in card
    progress = [e for e in events if isinstance(e, ExportProgressed) and e.phase == "writing"]
    assert progress and progress[-1].done == progress[-1].total == 36
    assert [e.count for e in events if isinstance(e, ExportFinished)] == [36]


def test_splits_are_stable_and_stratified(dataset: DatasetService, tmp_path: Path) -> None:
    first = _read_numpy(dataset.export("numpy", tmp_path / "a", split="0.5:0.25:0.25").output)
    second = _read_numpy(dataset.export("numpy", tmp_path / "b", split="0.5:0.25:0.25").output)
    assert {s: i["split"] for s, i in first.items()} == {s: i["split"] for s, i in second.items()}
    per_label = Counter((i["label"], i["split"]) for i in first.values())
    for label in LICENCES:  # 9 objects a label: 4.5 / 2.25 / 2.25 -> 5 / 2 / 2
        assert (per_label[(label, "train")], per_label[(label, "val")], per_label[(label, "test")]) == (5, 2, 2)


def test_assign_splits_many_labels_and_order_independent() -> None:
    rng = np.random.default_rng(0)
    items = [(f"id-{i}", f"c{rng.integers(0, 7)}") for i in range(2000)]
    a = common.assign_splits(items, (0.8, 0.1, 0.1))
    b = common.assign_splits(list(reversed(items)), (0.8, 0.1, 0.1))
    assert a == b
    for label in {lbl for _, lbl in items}:
        members = [sid for sid, lbl in items if lbl == label]
        counts = Counter(a[sid] for sid in members)
        assert abs(counts["train"] - 0.8 * len(members)) <= 1 and abs(counts["test"] - 0.1 * len(members)) <= 1
    assert common.parse_split("8:1:1") == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(ExportError):
        common.parse_split("a:b")


def test_licence_policy_commercial_leaves_out_nc_and_unlicensed(dataset: DatasetService, tmp_path: Path) -> None:
    result = dataset.export("parquet", tmp_path / "c", split="1:0:0", license_policy="commercial")
    got = _read_parquet(tmp_path / "c")
    assert {i["meta"]["license_spdx"] for i in got.values()} == {"CC-BY-4.0", "MIT"}
    assert result.count == 18 and result.skipped_total == 20 and list(result.split_counts) == ["train"]
    card = (tmp_path / "c" / "README.md").read_text()
    assert "does not allow commercial" in card and "path: data/train-*.parquet" in card


def test_filters_return_arrays_and_errors(dataset: DatasetService, tmp_path: Path) -> None:
    result = dataset.export("numpy", label="socket", min_confidence=0.6, return_arrays=True)
    arrays = result.arrays
    assert arrays is not None and arrays["points"].shape == (result.count, 2048, 3)
    assert set(arrays["split"]) <= {"train", "val", "test"} and list(arrays["label_names"]) == ["socket"]
    # label and confidence are filters (the rows db.query selects), not refusals: nothing is "skipped"
    assert result.count == 7 and result.skipped == {}
    with pytest.raises(ExportError):
        dataset.export("obj", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError):
        dataset.export("hdf5", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_views_exported_when_asked(store: Store, family_snapshots: dict[str, list[Snapshot]], tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    views = {}
    for n, snap in enumerate(family_snapshots["socket"]):
        copy = clone(snap)
        if n < 2:
            copy.geometry.views = rng.integers(0, 256, (12, 32, 32), dtype=np.uint8)
        views[store_snapshot(store, copy, label="socket", license_spdx="MIT")] = copy.geometry.views
    service = DatasetService(store)
    service.export("hdf5", tmp_path / "h", split="1:0:0", views=True)
    with h5py.File(tmp_path / "h" / "ply_data_train0.h5") as f:
        assert f["views"].shape == (3, 12, 32, 32)
        for i, sid in enumerate(f["snapshot_ids"][:]):
            expected = views[sid.decode()]
            meta = json.loads(f["metadata"][i])
            if expected is None:
                assert not f["views"][i].any() and meta["has_views"] is False
            else:
                assert np.array_equal(f["views"][i], expected)
    arrays = service.export("numpy", views=True, return_arrays=True).arrays
    for sid, got in zip(arrays["snapshot_ids"], arrays["views"], strict=True):
        assert np.array_equal(got, views[str(sid)] if views[str(sid)] is not None else np.zeros_like(got))
    service.export("parquet", tmp_path / "p", split="1:0:0", views=True)
    table = pq.read_table(tmp_path / "p" / "data" / "train-00000-of-00001.parquet").to_pylist()
    for row in table:
        expected = views[row["snapshot_id"]]
        if expected is not None:
            assert np.frombuffer(row["views"], np.uint8).reshape(12, 32, 32).tolist() == expected.tolist()
    without = service.export("hdf5", tmp_path / "n", split="1:0:0")
    with h5py.File(without.files[0]) as f:
        assert "views" not in f


def test_tfrecord_wire_format_matches_protobuf_and_reference_writer() -> None:
    from tfrecord import example_pb2
    from tfrecord.writer import TFRecordWriter

    from destill3d_tui.engine.store.export import tfrecord as tfr

    values = np.array([0.5, -1.25, 3.0e-8, 7.0], np.float32)
    payload = tfr.example({"f": tfr.float_feature(values), "i": tfr.int64_feature([0, 300, -2, 2**40]),
                           "b": tfr.bytes_feature([b"abc", "é".encode()])})
    parsed = example_pb2.Example.FromString(payload)
    feature = parsed.features.feature
    assert list(feature["f"].float_list.value) == values.tolist()
    assert list(feature["i"].int64_list.value) == [0, 300, -2, 2**40]
    assert list(feature["b"].bytes_list.value) == [b"abc", "é".encode()]
    length = struct.pack("<Q", len(payload))
    reference = length + TFRecordWriter.masked_crc(length) + payload + TFRecordWriter.masked_crc(payload)
    assert tfr.frame(payload) == reference


def test_cancelled_export_stops_and_writes_no_card(dataset: DatasetService, tmp_path: Path) -> None:
    import threading

    cancel = threading.Event()
    cancel.set()
    result = dataset.export("tfrecord", tmp_path / "t", cancel=cancel)
    assert result.interrupted and result.card is None and not (tmp_path / "t" / "README.md").exists()
    assert result.count == 0


def test_modelnet_folders_for_awkward_labels(tmp_path: Path) -> None:
    from destill3d_tui.engine.store.export.common import ExportLayout, ExportRecord
    from destill3d_tui.engine.store.export.modelnet import ModelNetExporter

    labels = ["Chair", "chair", "night stand", "night_stand", "a/b"]
    exporter = ModelNetExporter()
    exporter.begin(ExportLayout(tmp_path, labels, {"train": 5}))
    rng = np.random.default_rng(0)
    written = {}
    for i, label in enumerate(labels):
        points = rng.standard_normal((2048, 3)).astype(np.float32)
        item = exporter.write(ExportRecord(f"id{i}", points, points, label, i, "train"))
        written[item] = points
    exporter.finish()
    classes = (tmp_path / "modelnet40_shape_names.txt").read_text().split()
    assert len(set(c.lower() for c in classes)) == 5 and all("/" not in c and " " not in c for c in classes)
    for shape_id in (tmp_path / "modelnet40_train.txt").read_text().split():
        folder = "_".join(shape_id.split("_")[:-1])
        assert folder in classes
        data = np.loadtxt(tmp_path / folder / f"{shape_id}.txt", delimiter=",").astype(np.float32)
        assert np.array_equal(data[:, :3], written[f"{folder}/{shape_id}.txt"])


def test_group_duplicates_keeps_copies_in_one_split(dataset: DatasetService, tmp_path: Path) -> None:
    plain = _read_numpy(dataset.export("numpy", tmp_path / "a", split="0.5:0.25:0.25").output)
    assert all(len({i["split"] for i in plain.values() if i["label"] == lbl}) == 3 for lbl in LICENCES)
    result = dataset.export("numpy", tmp_path / "g", split="0.5:0.25:0.25", group_duplicates=True)
    grouped = _read_numpy(result.output)
    for label in LICENCES:  # a family = one mesh, its rotated and re-meshed copies, and clones of them
        assert len({i["split"] for i in grouped.values() if i["label"] == label}) == 1
    assert '"group_duplicates": true' in (tmp_path / "g" / "README.md").read_text()
    items = [(f"id{i}", "x") for i in range(10)]
    groups = {f"id{i}": "id0" for i in range(4)}
    split = common.assign_splits(items, (0.5, 0.5, 0.0), groups)
    assert len({split[f"id{i}"] for i in range(4)}) == 1
