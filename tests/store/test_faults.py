"""Database faults stop the run, not the data (issue 13.6), and explicit paths are not invented (14.8).

Real SQLite files and real ``destill3d-tui`` processes: a file of random bytes, a damaged index
(``integrity_check`` fails), a read-only file (``chattr +i``: read-only even for root), and a
full database (SQLite's own ``max_page_count`` limit raises SQLITE_FULL for real).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.errors import DatabaseError
from destill3d_tui.engine.queue import Queue
from destill3d_tui.engine.store import service
from destill3d_tui.engine.store.db import Store

from .conftest import REPO, cli, cli_env, make_settings


def run_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), env=cli_env(home), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def one_clear_line(stderr: str, *needles: str) -> str:
    """The error line; no traceback reached the user."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("destill3d-tui: ")]
    assert len(lines) == 1, stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
        assert sum(needle in line for line in stderr.splitlines()) == 1, stderr[-3000:]  # said once
    return lines[0]


# ---------------------------------------------------------------- --db paths (14.8)


def test_db_in_a_missing_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.sqlite"
    result = run_cli(tmp_path / "home", "--db", str(missing), "db", "stats")
    assert result.returncode != 0
    one_clear_line(result.stderr, str(missing), "does not exist")
    assert not (tmp_path / "nonexistent").exists()  # no folders invented
    assert "Total snapshots" not in result.stdout


def test_a_new_database_in_an_existing_folder_says_it_was_created(tmp_path: Path) -> None:
    db = tmp_path / "fresh.sqlite"
    result = run_cli(tmp_path / "home", "--db", str(db), "db", "stats")
    assert result.returncode == 0, result.stderr
    assert f"created a new database at {db}" in result.stderr and db.exists()
    again = run_cli(tmp_path / "home", "--db", str(db), "db", "stats")
    assert again.returncode == 0 and "created" not in again.stderr


# ---------------------------------------------------------------- damaged and read-only files (13.6)


def test_random_bytes_as_db_is_one_clear_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(16384))
    before = junk.read_bytes()
    result = run_cli(tmp_path / "home", "--db", str(junk), "db", "stats")
    assert result.returncode != 0
    one_clear_line(result.stderr, "database_corrupt", str(junk))
    assert junk.read_bytes() == before  # not "repaired" into something else


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Make files and folders unwritable for this user, root included (immutable when we are root)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, paths)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def queued_database(tmp_path: Path, small_dir: Path) -> Path:
    """A database in a folder of its own, with the small files queued."""
    db = tmp_path / "ro" / "d.db"
    db.parent.mkdir()
    store = Store(f"sqlite:///{db}")
    Queue(store).add_paths([small_dir])
    store.close()
    return db


def test_read_only_database_reads_work_and_writes_say_so(tmp_path: Path, small_dir: Path) -> None:
    db = queued_database(tmp_path, small_dir)
    home = tmp_path / "home"
    with read_only(db, db.parent):
        stats = run_cli(home, "--db", str(db), "db", "stats")
        assert stats.returncode == 0, stats.stderr[-3000:]
        assert "Total snapshots: 0" in stats.stdout and "queued 8" in stats.stdout
        query = run_cli(home, "--db", str(db), "db", "query")
        assert query.returncode == 0 and "Traceback" not in query.stderr, query.stderr[-3000:]
        write = run_cli(home, "--db", str(db), "extract", "dir", str(small_dir))
        assert write.returncode != 0
        one_clear_line(write.stderr, "read-only", str(db))
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM processing_queue").fetchone()[0] == 8


def damage_an_index(db: Path) -> None:
    """Overwrite the root page of the queue's lease index: the file opens, integrity_check fails."""
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'idx_queue_lease'").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    try:
        verdict = sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:  # the check itself may stop at the damaged page
        verdict = str(exc)
    assert verdict != "ok"


def test_damaged_database_stops_the_headless_run_with_one_line(tmp_path: Path, small_dir: Path) -> None:
    db = tmp_path / "d.db"
    with Destill3D(make_settings(f"sqlite:///{db}")) as d3d:
        d3d.queue_engine.add_paths([small_dir])
    damage_an_index(db)
    started = time.monotonic()
    result = run_cli(tmp_path / "home", "--db", str(db), "--workers", "1", "--headless", timeout=120)
    assert time.monotonic() - started < 60  # today: the writer retries for ever, nothing printed
    assert result.returncode not in (0, 1)
    one_clear_line(result.stderr, "database_corrupt", str(db))


def test_full_database_stops_the_run_within_seconds_and_keeps_what_was_stored(
    tmp_path: Path, small_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    d3d = Destill3D(make_settings(url))
    for path in sorted(small_dir.iterdir())[:2]:  # two stored before the disk fills
        snapshot = d3d.extract.from_file(path)
        snapshot.provenance.original_file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
        service.insert_snapshot(d3d.store, snapshot, snapshot.to_bytes())
    d3d.queue_engine.add_paths([small_dir])
    pages = d3d.store.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's hard page limit, on every connection the pipeline opens: SQLITE_FULL, as on a full disk.
    d3d.store.database._pragmas = [*d3d.store.database._pragmas, ("max_page_count", pages + 2)]
    started = time.monotonic()
    with pytest.raises(DatabaseError) as caught:
        d3d.pipeline.run_until_empty()
    assert time.monotonic() - started < 60
    assert caught.value.reason == "database_full" and str(tmp_path / "d.db") in str(caught.value)
    d3d.close()
    store = Store(url)
    assert store.Snapshots.select().count() >= 2  # nothing stored was lost
    queue = Queue(store)
    assert queue.counts()["failed"] == 0  # and nothing was failed for the database's fault
    assert queue.reap()[1] == 0
    assert all(r.retry_count <= 1 for r in queue.list(limit=100))
    store.close()
