"""One provenance mapping: the stored row, each record's metadata and the attribution manifest agree."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store import provenance
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.export.stream import ROW_COLUMNS
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot

CREDIT_COLUMNS = ("title", "author", "source_url", "platform", "license", "license_spdx", "original_file_hash")


def test_manifest_and_parquet_carry_the_stored_provenance(tmp_path: Path,
                                                          family_snapshots: dict[str, list[Snapshot]]) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    for name, snaps in family_snapshots.items():
        for n, snap in enumerate(snaps):
            store_snapshot(store, clone(snap), label=name, license_spdx="CC-BY-4.0", platform="thingiverse",
                           title=f"{name} {n}")
    stored = {row[0]: tuple(v or "" for v in row[1:]) for row in
              store.execute(f"SELECT snapshot_id, {', '.join(CREDIT_COLUMNS)} FROM snapshots")}  # fmt: skip
    DatasetService(store).export("parquet", tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "attribution.json").read_text())["objects"]
    assert len(manifest) == len(stored)
    for entry in manifest:
        assert tuple(entry[key] for key in provenance.ATTRIBUTION) == stored[entry["snapshot_id"]]
    assert all(len(e["sha256"]) == 64 for e in manifest)  # the source file's hash, from original_file_hash
    rows = pq.read_table(sorted((tmp_path / "out").rglob("*.parquet"))).to_pylist()
    by_id = {e["snapshot_id"]: e for e in manifest}
    for row in rows:
        entry = by_id[row["snapshot_id"]]
        assert {k: row[k] for k in ("title", "author", "source_url", "platform", "license", "license_spdx",
                                     "sha256")} == {k: entry[k] for k in provenance.ATTRIBUTION}  # fmt: skip
        assert json.loads(row["metadata"])["sha256"] == entry["sha256"]
    store.close()


def test_the_write_scan_reads_every_mapped_column() -> None:
    assert set(provenance.COLUMNS.values()) <= set(ROW_COLUMNS)
    assert set(provenance.ATTRIBUTION) <= set(provenance.COLUMNS)
    row = {column: "" for column in provenance.COLUMNS.values()} | {"original_file_hash": "ab" * 32, "title": None}
    assert provenance.from_row(row)["sha256"] == "ab" * 32 and provenance.from_row(row)["title"] == ""
