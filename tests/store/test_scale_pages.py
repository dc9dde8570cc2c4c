"""First pages and counts at scale (issue 18): keyset pages, their indexes, counts from the totals.

Real SQLite files and the real PostgreSQL server; snapshots are copies of a real extraction
stored through the writer's own insert.
"""

from __future__ import annotations

import pytest

from destill3d_tui.engine.store import service
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.filters import SnapshotFilter
from destill3d_tui.engine.store.service import StoreService, where_sql
from destill3d_tui.engine.store.snapshot import Snapshot

from .test_scale_totals import insert, template  # noqa: F401 - the module fixture is used by name

FILTERS = (SnapshotFilter(), SnapshotFilter(label="CHAIR"), SnapshotFilter(platform="github"),
           SnapshotFilter(source_format="stl"), SnapshotFilter(label="vase", platform="thingiverse"))  # fmt: skip


def walk(svc: StoreService, flt: SnapshotFilter, size: int, between: object = None) -> list[str]:
    """Every page of ``flt`` by key, calling ``between()`` after each page; the ids in order."""
    seen: list[str] = []
    after = None
    while True:
        rows = svc.page(after, size, flt)
        seen += [r.snapshot_id for r in rows]
        if len(rows) < size:
            return seen
        after = (rows[-1].processed_at, rows[-1].snapshot_id)
        if callable(between):
            between()


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: f.describe() or "all")
def test_keyset_pages_return_every_row_once_while_another_writer_inserts(
    db_url: str, template: bytes, flt: SnapshotFilter  # noqa: F811
) -> None:
    store, other = Store(db_url), Store(db_url)
    svc = StoreService(store)
    insert(store, template, 0, 120)
    # a block of rows with one timestamp: only the snapshot_id tie-breaker orders them
    store.execute("UPDATE snapshots SET processed_at = (SELECT MIN(processed_at) FROM snapshots) "
                  "WHERE snapshot_id IN (SELECT snapshot_id FROM snapshots ORDER BY snapshot_id LIMIT 50)")  # fmt: skip
    before = {r.snapshot_id for r in svc.query(limit=10_000, filter=flt)}
    assert before
    counter = iter(range(1000, 2000, 7))
    seen = walk(svc, flt, 9, between=lambda: insert(other, template, next(counter), 7))
    assert len(seen) == len(set(seen))  # no row twice
    assert before <= set(seen)  # no row that was there from the start skipped
    assert svc.count(flt) == svc.count_rows(flt) >= len(seen)
    store.close(), other.close()


def test_counts_from_the_totals_equal_counting_the_rows(db_url: str, template: bytes) -> None:  # noqa: F811
    store = Store(db_url)
    svc = StoreService(store)
    insert(store, template, 0, 30)
    store.execute("UPDATE snapshots SET label = 'Chair' WHERE label = 'chair' AND platform = 'github'")
    cases = [*FILTERS, SnapshotFilter(label="chair"), SnapshotFilter(platform="GitHub"),
             SnapshotFilter(source_format=".obj"), SnapshotFilter(label="nothing"), SnapshotFilter(label="Stühle"),
             SnapshotFilter(platform="local", min_confidence=0.5), SnapshotFilter(text="chair")]  # fmt: skip
    for flt in cases:
        assert svc.count(flt) == svc.count_rows(flt), flt
    assert svc.count(label="chair") == 12  # 'chair' and 'Chair' alike, as the SQL LOWER() compares
    store.close()


def test_first_pages_read_an_index_range_not_a_sort(db_url: str, template: bytes) -> None:  # noqa: F811
    """The planner's own account: each filter's first page comes off an index in the page order."""
    store = Store(db_url)
    insert(store, template, 0, 40)
    if store.is_postgres:
        store.execute("ANALYZE snapshots")
    for flt in FILTERS:
        where, params = where_sql(store, flt)
        sql = f"SELECT snapshot_id FROM snapshots WHERE {where} ORDER BY processed_at DESC, snapshot_id LIMIT 100"
        if store.is_postgres:
            with store.atomic():  # a 40-row table is cheaper to scan: ask whether an index can serve the order
                store.execute("SET LOCAL enable_seqscan = off")
                store.execute("SET LOCAL enable_sort = off")
                store.execute("SET LOCAL enable_incremental_sort = off")
                plan = " ".join(r[0] for r in store.execute("EXPLAIN " + sql, params).fetchall())
            assert "Index" in plan and " Sort " not in f" {plan} ", (flt, plan)
        else:
            plan = " ".join(r[-1] for r in store.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
            assert "INDEX idx_snapshots_" in plan and "TEMP B-TREE" not in plan, (flt, plan)
    store.close()


def _plan(store: Store, sql: str, params: list | tuple) -> str:
    """The planner's account of ``sql``; PostgreSQL is told to avoid scans where an index can serve."""
    if not store.is_postgres:
        return " ".join(r[-1] for r in store.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
    with store.atomic():  # a 40-row table is cheaper to scan: ask whether an index can serve at all
        store.execute("SET LOCAL enable_seqscan = off")
        return " ".join(r[0] for r in store.database.execute_sql("EXPLAIN " + sql, params).fetchall())


def test_lookups_by_source_hash_read_the_index(db_url: str, template: bytes, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Every acquired item is looked up by its file's SHA-256 (already stored?) and every new snapshot
    again before it is stored: the SQL those lookups send must come off the hash index, not scan
    the table (a scan read every snapshot's row: 127 ms a lookup at 100,000 snapshots)."""
    from destill3d_tui.engine.store.duplicates import is_near_duplicate

    store = Store(db_url)
    made = insert(store, template, 0, 40)
    if store.is_postgres:
        store.execute("ANALYZE snapshots")
    sent: list[tuple[str, tuple]] = []
    execute_sql = store.database.execute_sql

    def recorded(sql: str, params: tuple | list = (), *args: object) -> object:
        sent.append((sql, tuple(params)))
        return execute_sql(sql, params, *args)

    monkeypatch.setattr(store.database, "execute_sql", recorded)
    target = made[17]
    assert service.snapshot_id_for_hash(store, target.provenance.original_file_hash) == target.snapshot_id
    copy = Snapshot.from_bytes(target.to_bytes())
    copy.snapshot_id = "another-id"
    assert is_near_duplicate(copy, store) == target.snapshot_id
    monkeypatch.undo()
    lookups = [(sql, params) for sql, params in sent if "original_file_hash" in sql]
    assert len(lookups) == 2, sent
    for sql, params in lookups:
        plan = _plan(store, sql, params)
        if store.is_postgres:
            assert "idx_snapshots_file_hash" in plan and "Seq Scan" not in plan, (sql, plan)
        else:
            assert "USING INDEX idx_snapshots_file_hash" in plan and "SCAN snapshots" not in plan, (sql, plan)
    store.close()


def test_the_writers_single_insert_still_raises_peewees_integrity_error(db_url: str, template: bytes) -> None:  # noqa: F811
    """The writer catches pw.IntegrityError for a duplicate file; the multi-row insert must raise it too."""
    import peewee as pw

    store = Store(db_url)
    first = insert(store, template, 0, 1)[0]
    with pytest.raises(pw.IntegrityError), store.atomic():
        service.insert_snapshot(store, first, template)
    store.close()


def test_db_query_after_an_id_lists_the_next_page_as_offset_does(tmp_path, template: bytes, capsys) -> None:  # noqa: F811
    """`db query --after ID`: the keyset page a script asks for a million rows down (issue 18)."""
    import json

    from destill3d_tui.cli import main

    db = tmp_path / "d3d.db"
    store = Store(f"sqlite:///{db}")
    insert(store, template, 0, 30)
    store.close()

    def ids(*args: str) -> list[str]:
        assert main(["--db", str(db), "db", "query", "--json", *args]) == 0
        return [json.loads(line)["snapshot_id"] for line in capsys.readouterr().out.splitlines()]

    first = ids("--limit", "7")
    assert ids("--limit", "7", "--after", first[-1]) == ids("--limit", "7", "--offset", "7")
    assert ids("--limit", "50", "--after", first[-1][:12]) == ids("--limit", "50", "--offset", "7")  # a prefix
    chair = ids("--label", "chair", "--limit", "3")
    assert ids("--label", "chair", "--limit", "3", "--after", chair[-1]) == ids("--label", "chair", "--limit", "3",
                                                                                "--offset", "3")  # fmt: skip
    assert main(["--db", str(db), "db", "query", "--after", first[0], "--offset", "2"]) != 0
    assert "give one" in capsys.readouterr().err
