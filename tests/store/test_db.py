"""The database: the spec's schema on SQLite and PostgreSQL, migrations, and the snapshot rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import peewee as pw
import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.errors import DatabaseError, NotFoundError
from destill3d_tui.engine.store import migrations, service
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import Prediction

from .conftest import make_settings

# Section 8.1 of the spec, table by table: every column must exist under exactly this name.
SPEC_COLUMNS = {
    "snapshots": "snapshot_id model_id platform source_url source_id title author license original_format "
    "original_file_size original_file_hash snapshot_data snapshot_version point_count is_watertight surface_area "
    "volume source_created_at acquired_at processed_at created_at updated_at",
    "tags": "tag_id tag_name",
    "snapshot_tags": "snapshot_id tag_id source confidence",
    "classifications": "classification_id snapshot_id model_id taxonomy label confidence rank uncertainty "
    "classified_at",
    "embeddings": "snapshot_id model_id embedding embedding_dim created_at",
    "processing_queue": "queue_id model_id platform source_url stage priority retry_count max_retries last_error "
    "temp_path created_at updated_at scheduled_at",
}
CURATION = {
    "snapshots": {"license_spdx", "license_flags", "quality_flags", "source_status", "label", "confidence",
                  "snapshot_bytes"},
    "processing_queue": {"reason", "lease_owner", "lease_expires_at", "heartbeat_at", "metadata", "group_id",
                         "file_id", "snapshot_id", "duplicate_of", "bytes_in"},
}  # fmt: skip


def columns(store: Store, table: str) -> set[str]:
    return {c.name for c in store.database.get_columns(table)}


def indexes(store: Store) -> set[str]:
    return {i.name for table in ("snapshots", "embeddings") for i in store.database.get_indexes(table)}


def test_v2_database_gets_the_covering_indexes_in_place(db_url: str) -> None:
    store = Store(db_url)
    store.execute(
        "INSERT INTO processing_queue (model_id, platform, source_url, stage) VALUES ('t:1', 't', 'u', 'queued')"
    )
    with store.atomic():  # back to what a v2 database looked like
        store.execute("DROP INDEX idx_embeddings_model_created_id")
        store.execute("DROP INDEX idx_snapshots_id_processed")
        store.execute("DELETE FROM schema_version WHERE version >= 3")
    store.close()
    again = Store(db_url, migrate=False)
    assert migrations.current_version(again) == 2
    assert not {"idx_embeddings_model_created_id", "idx_snapshots_id_processed"} & indexes(again)
    again.close()
    upgraded = Store(db_url)
    assert migrations.current_version(upgraded) == migrations.LATEST
    assert {"idx_embeddings_model_created_id", "idx_snapshots_id_processed"} <= indexes(upgraded)
    assert upgraded.execute("SELECT COUNT(*) FROM processing_queue").fetchone()[0] == 1  # nothing lost
    upgraded.execute("CREATE INDEX IF NOT EXISTS idx_snapshots_id_processed ON snapshots(snapshot_id, processed_at)")
    upgraded.close()


def test_schema_has_the_spec_names_and_curation_columns(db_url: str) -> None:
    store = Store(db_url)
    tables = set(store.database.get_tables())
    assert set(SPEC_COLUMNS) | {"schema_version"} <= tables
    for table, names in SPEC_COLUMNS.items():
        assert set(names.split()) <= columns(store, table), table
    for table, names in CURATION.items():
        assert names <= columns(store, table), table
    assert migrations.current_version(store) == migrations.LATEST
    assert {"idx_embeddings_model_created_id", "idx_snapshots_id_processed"} <= indexes(store)  # v3, covering
    hash_index = [i for i in store.database.get_indexes("snapshots") if i.name == "idx_snapshots_file_hash"]
    assert hash_index and hash_index[0].unique
    store.close()


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=4321)
    pragma = lambda name: store.execute(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
    assert pragma("journal_mode") == "wal"
    assert pragma("synchronous") == 1  # NORMAL
    assert pragma("foreign_keys") == 1
    assert pragma("busy_timeout") == 4321
    store.close()


def test_v1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in migrations.v1_statements():
        conn.execute(statement)
    conn.execute(
        "INSERT INTO snapshots (snapshot_id, model_id, platform, snapshot_data, snapshot_version, acquired_at,"
        " processed_at) VALUES ('s1', 'thingiverse:1', 'thingiverse', x'00', 1, '2024-01-01', '2024-01-02')"
    )
    conn.execute(
        "INSERT INTO processing_queue (model_id, platform, source_url, stage)"
        " VALUES ('local:a', 'local', 'u', 'queued')"
    )
    conn.commit()
    conn.close()

    store = Store(f"sqlite:///{path}")
    assert migrations.current_version(store) == migrations.LATEST
    versions = [r[0] for r in store.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, migrations.LATEST + 1))
    assert {"idx_embeddings_model_created_id", "idx_snapshots_id_processed"} <= indexes(store)
    row = store.Snapshots.get(store.Snapshots.snapshot_id == "s1")
    assert row.model_id == "thingiverse:1" and row.label is None and row.source_status == "unknown"
    queued = store.ProcessingQueue.get(store.ProcessingQueue.model_id == "local:a")
    assert queued.stage == "queued" and queued.bytes_in == 0 and queued.lease_owner is None
    fresh = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    for table in SPEC_COLUMNS:
        assert columns(store, table) == columns(fresh, table), table
    store.close()
    fresh.close()
    assert Store(f"sqlite:///{path}").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Store(url).execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(DatabaseError) as info:
        Store(url)
    assert info.value.reason == "schema_too_new"


def test_snapshot_rows_queries_and_stats(db_url: str, small_dir: Path) -> None:
    d3d = Destill3D(make_settings(db_url))
    files = sorted(small_dir.glob("*"))[:3]
    snaps = [d3d.extract.from_file(f) for f in files]
    snaps[0].predictions = [
        Prediction("chair", 0.9, model_name="m1", rank=1),
        Prediction("table", 0.05, model_name="m1", rank=2),
    ]
    snaps[0].embedding = np.arange(8, dtype=np.float32)
    snaps[0].embedding_model = "m1"
    snaps[0].provenance.tags = ["Furniture", "wood"]
    snaps[0].provenance.license_spdx = "CC-BY-4.0"
    snaps[0].provenance.license_flags = {"commercial": True, "derivatives": True}
    store = d3d.store
    with store.atomic():
        for snap in snaps:
            snap.model_id = f"local:{snap.provenance.original_filename}"
            service.insert_snapshot(store, snap, snap.to_bytes())

    assert d3d.db.count() == 3
    assert [r.snapshot_id for r in d3d.db.query(label="CHAIR")] == [snaps[0].snapshot_id]
    assert d3d.db.count(min_confidence=0.5) == 1 and d3d.db.count(license="cc-by-4.0") == 1
    formats = {s.provenance.original_format for s in snaps}
    assert sum(d3d.db.count(format=f) for f in formats) == 3
    got = d3d.db.get(snaps[0].snapshot_id[:10])
    assert got.snapshot_id == snaps[0].snapshot_id and got.top_prediction().label == "chair"
    np.testing.assert_allclose(got.geometry.points, snaps[0].geometry.points, atol=2e-3)
    with pytest.raises(NotFoundError):
        d3d.db.get("no-such-id")

    stats = d3d.db.stats()
    assert stats["totals"]["snapshots"] == 3 and stats["by_platform"] == {"local": 3}
    assert stats["classification_coverage"] == pytest.approx(1 / 3)
    assert stats["bytes_kept"] == sum(len(s.to_bytes()) for s in snaps)
    assert stats["compression_ratio"] == pytest.approx(sum(f.stat().st_size for f in files) / stats["bytes_kept"])
    tags = {r.tag_name for r in store.Tags.select()}
    assert tags == {"furniture", "wood", "chair"}
    emb = store.Embeddings.get(store.Embeddings.snapshot_id == snaps[0].snapshot_id)
    assert emb.embedding_dim == 8 and np.frombuffer(bytes(emb.embedding), "<f4")[3] == 3.0

    # Same source file again: the unique hash index refuses a second copy.
    again = d3d.extract.from_file(files[0])
    again.model_id = "local:elsewhere"
    with pytest.raises(pw.IntegrityError), store.atomic():
        service.insert_snapshot(store, again, again.to_bytes())
    # Foreign keys cascade: deleting the snapshot removes its tags, classifications, embedding.
    with store.atomic():
        store.Snapshots.delete().where(store.Snapshots.snapshot_id == snaps[0].snapshot_id).execute()
    assert store.Classifications.select().count() == 0
    assert store.Embeddings.select().count() == 0 and store.SnapshotTags.select().count() == 0
    d3d.close()
