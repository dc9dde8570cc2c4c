"""Similarity, duplicates, index reconciliation and export on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from destill3d_tui.engine.services.dataset import DatasetService
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import Snapshot

from .conftest import clone, store_snapshot


def test_postgres_similar_duplicates_export(pg_store: Store, family_snapshots: dict[str, list[Snapshot]],
                                            tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ids = {}
    for name, snaps in family_snapshots.items():
        centre = rng.standard_normal(32)
        ids[name] = [store_snapshot(pg_store, clone(s), label=name, license_spdx="MIT", platform="github",
                                    embedding=centre + 0.05 * rng.standard_normal(32), embedding_model="enc")
                     for s in snaps]
    service = DatasetService(pg_store)
    original, *copies = ids["teapot"]
    assert {sid for sid, _ in service.find_similar(original, k=2)} == set(copies)
    assert {sid for sid, _ in service.find_similar(original[:9], k=2, space="geometric")} == set(copies)
    assert sorted(map(sorted, service.duplicates())) == sorted(sorted(v) for v in ids.values())

    pg_store.execute("DELETE FROM snapshots WHERE snapshot_id = ?", (copies[0],))  # cascades to embeddings
    again = [sid for sid, _ in service.find_similar(original, k=3)]
    assert copies[0] not in again and again[0] == copies[1]

    result = service.export("parquet", tmp_path / "pq", split="1:0:0")
    table = pq.read_table(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet")
    assert result.count == 11 and table.num_rows == 11 and set(table.column("license_spdx").to_pylist()) == {"MIT"}

    # two shards in flight, keyed by snapshot id: each shard a block of the ids in order, every object once
    sharded = service.export("webdataset", tmp_path / "wd", split="1:0:0", shard_rows=3)
    import webdataset as wds

    shards = [[s["__key__"] for s in wds.WebDataset(str(p), shardshuffle=False)]
              for p in sorted((tmp_path / "wd").glob("train-*.tar"))]  # fmt: skip
    ids = [sid for shard in shards for sid in shard]
    assert sharded.count == 11 and [len(s) for s in shards] == [3, 3, 3, 2] and ids == sorted(ids)
    assert set(ids) == set(table.column("snapshot_id").to_pylist())
