"""Running totals (issue 18): kept by the database's triggers, always equal to a full recount.

Real SQLite files and the real PostgreSQL server (``db_url`` runs each test on both); snapshots
are copies of a real extraction from the shared corpus stored through ``insert_snapshot``, the
writer's own insert.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.extract import extract_file
from destill3d_tui.engine.queue import Queue, QueueEntry
from destill3d_tui.engine.store import migrations, service
from destill3d_tui.engine.store.db import STORED, Store
from destill3d_tui.engine.store.service import StoreService
from destill3d_tui.engine.store.snapshot import Prediction, Snapshot

from .conftest import make_settings

PLATFORMS = ("thingiverse", "github", "local")
FORMATS = ("STL", "OBJ", None)
LABELS = ("chair", "vase", None)


@pytest.fixture(scope="module")
def template(corpus_dir: Path) -> bytes:
    return extract_file(corpus_dir / "off/Cube.off", points=256, seed=0).to_bytes()


def make_snapshot(template: bytes, i: int) -> tuple[Snapshot, bytes]:
    """A copy of the template with its own id, platform, format, licence and label."""
    snap = Snapshot.from_bytes(template)
    snap.snapshot_id, snap.model_id = str(uuid.uuid4()), f"t:{i}-{uuid.uuid4().hex[:6]}"
    p = snap.provenance
    p.platform, p.original_format = PLATFORMS[i % 3], FORMATS[(i // 3) % 3]
    p.license_spdx, p.license = ("MIT", "MIT License") if i % 2 else ("", "All rights reserved")
    p.original_file_size, p.original_file_hash = 1000 + i, uuid.uuid4().hex
    label = LABELS[(i // 9) % 3]
    snap.predictions = [Prediction(label=label, confidence=0.7, taxonomy="t", model_name="m")] if label else []
    snap.embedding, snap.embedding_model = np.ones(8, dtype=np.float32) * i, "enc"
    blob = snap.to_bytes()
    return snap, blob


def insert(store: Store, template: bytes, first: int, count: int) -> list[Snapshot]:
    made = []
    with store.atomic():
        for i in range(first, first + count):
            snap, blob = make_snapshot(template, i)
            service.insert_snapshot(store, snap, blob)
            made.append(snap)
    service.tags_committed(store)
    return made


def assert_totals_true(svc: StoreService) -> dict:
    kept = svc.totals()
    assert kept == svc.scan_totals()
    stats, scanned = svc.stats(), svc.stats(scan=True)
    stats.pop("database_file_bytes"), scanned.pop("database_file_bytes")
    assert stats == scanned
    return kept


def test_totals_equal_a_recount_after_inserts_changes_deletes_and_a_reopen(db_url: str, template: bytes) -> None:
    store = Store(db_url)
    svc = StoreService(store)
    assert svc.totals()["snapshots"] == 0
    made = insert(store, template, 0, 27)
    kept = assert_totals_true(svc)
    assert kept["snapshots"] == 27 and kept["classified"] == 18  # a third have no label
    assert kept["by_platform"] == {"github": 9, "local": 9, "thingiverse": 9}
    assert kept["by_format"] == {"": 9, "OBJ": 9, "STL": 9}
    assert kept["source_bytes"] == sum(1000 + i for i in range(27))

    # a reclassification changes the label (an UPDATE of the row)
    made[0].predictions = [Prediction(label="lamp", confidence=0.9, taxonomy="t", model_name="m")]
    service.update_classification(store, made[0])
    assert assert_totals_true(svc)["by_label"]["lamp"] == 1

    # a deletion by hand (no code path deletes snapshots: the triggers still see it)
    doomed = [s.snapshot_id for s in made[1:6]]
    store.execute(f"DELETE FROM snapshots WHERE snapshot_id IN ({', '.join('?' * len(doomed))})", doomed)
    assert assert_totals_true(svc)["snapshots"] == 22

    # the queue: rows added, claimed, stored as duplicates with their downloaded bytes
    queue = Queue(store)
    ids = queue.add_entries([QueueEntry(model_id=f"q:{i}", platform="github", source_url=f"u{i}") for i in range(6)])
    for row in queue.claim("me", 4):
        assert queue.advance(row.queue_id, "me", STORED, reason="duplicate", bytes_in=500)
    kept = assert_totals_true(svc)
    assert kept["queue"] == 6 and kept["duplicates"] == 4 and kept["bytes_downloaded"] == 2000
    assert kept["by_stage"] == {"queued": 2, "stored": 4}
    store.execute("DELETE FROM processing_queue WHERE queue_id = ?", (ids[-1],))
    assert assert_totals_true(svc)["queue"] == 5
    store.close()

    again = Store(db_url)
    svc = StoreService(again)
    assert assert_totals_true(svc)["snapshots"] == 22
    insert(again, template, 100, 4)
    assert assert_totals_true(svc)["snapshots"] == 26
    again.close()


def test_a_rolled_back_insert_leaves_the_totals_as_they_were(db_url: str, template: bytes) -> None:
    store = Store(db_url)
    svc = StoreService(store)
    insert(store, template, 0, 3)
    before = svc.totals()
    with pytest.raises(RuntimeError), store.atomic():
        snap, blob = make_snapshot(template, 50)
        service.insert_snapshot(store, snap, blob)
        raise RuntimeError("the writer's batch failed")
    service.tags_rolled_back(store)
    assert svc.totals() == before == svc.scan_totals()
    store.close()


def test_recount_repairs_totals_and_the_v4_upgrade_backfills_them(db_url: str, template: bytes) -> None:
    store = Store(db_url)
    svc = StoreService(store)
    insert(store, template, 0, 12)
    store.execute("UPDATE totals SET n = n + 5")  # damaged by hand
    assert svc.totals() != svc.scan_totals()
    svc.recount()
    assert_totals_true(svc)

    with store.atomic():  # back to a version-3 database: no totals table, no triggers
        for table in ("snapshots", "processing_queue"):
            for op in ("", "_insert", "_delete", "_update"):
                on = f" ON {table}" if store.is_postgres else ""
                store.execute(f"DROP TRIGGER IF EXISTS trg_totals_{table}{op}{on}")
        store.execute("DROP TABLE totals")
        store.execute("DELETE FROM schema_version WHERE version >= 4")
    insert(store, template, 20, 3)  # stored by version-3 code: not counted anywhere
    store.close()
    upgraded = Store(db_url)
    assert migrations.current_version(upgraded) == migrations.LATEST
    assert assert_totals_true(StoreService(upgraded))["snapshots"] == 15
    upgraded.close()


def test_db_stats_answers_from_the_totals_and_recount_rebuilds_them(tmp_path: Path, template: bytes) -> None:
    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd3d.db'}"))
    insert(d3d.store, template, 0, 6)
    d3d.store.execute("UPDATE totals SET n = 100 WHERE dimension = 'snapshots'")
    assert d3d.db.stats()["total_count"] == 100  # read from the totals, not counted
    assert d3d.db.stats(recount=True)["total_count"] == 6
    assert d3d.db.totals()["by_platform"] == {"github": 2, "local": 2, "thingiverse": 2}
    d3d.close()


def test_concurrent_writers_on_postgresql_keep_exact_totals(pg_url: str, template: bytes) -> None:
    """Four writers (a store each, as on four machines) inserting at once: no deadlock, nothing lost."""
    store = Store(pg_url)
    errors: list[BaseException] = []

    def write(first: int) -> None:
        mine = Store(pg_url)
        try:
            for batch in range(5):
                insert(mine, template, first + batch * 4, 4)
        except BaseException as exc:
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    svc = StoreService(store)
    assert assert_totals_true(svc)["snapshots"] == 80
    store.close()
