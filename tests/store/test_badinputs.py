"""The bad-input corpus through ``extract dir`` into the database: every item ends stored or failed
with a reason, the engine keeps going, nothing escapes, and rows that were there stay as they were."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from destill3d_tui.engine.archive import is_archive_name
from destill3d_tui.engine.formats import EXTENSIONS
from tests.acquire import hostile_archives
from tests.fakes.server import FakeServer

from .conftest import REPO, cli, cli_env


def rows_of(db: Path, table: str) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    key = "snapshot_id" if table == "snapshots" else "queue_id"
    out = {str(r[0]): tuple(r) for r in conn.execute(f"SELECT {key}, * FROM {table}")}
    conn.close()
    return out


def test_bad_inputs_into_the_database(tmp_path: Path, small_dir: Path, shared_dir: Path) -> None:
    server = FakeServer().start()  # the canary: answers 404, records every request
    canary = server.url
    work = tmp_path / "a" / "b" / "work"  # deep, so that ../../ escapes land where we can look
    bad = work / "bad"
    subprocess.run([sys.executable, str(shared_dir / "badinputs" / "make_bad_inputs.py"), str(bad),
                    "--canary-url", canary], check=True, capture_output=True)  # fmt: skip
    manifest = json.loads((bad / "manifest.json").read_text())
    hostile_archives.write_cases(bad)
    db, home = tmp_path / "d.db", tmp_path / "home"
    flags = ("--db", str(db), "--set", "extraction.target_points=512", "--set", "pipeline.max_retries=2",
             "--set", "pipeline.retry_backoff_s=0.05", "--set", "extraction.timeout_s=30",
             "--workers", "2")  # fmt: skip
    first = subprocess.run(cli(*flags, "extract", "dir", str(small_dir)), env=cli_env(home), cwd=REPO,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    before_snapshots, before_queue = rows_of(db, "snapshots"), rows_of(db, "processing_queue")
    assert len(before_snapshots) == 8

    result = subprocess.run(cli(*flags, "extract", "dir", str(bad)), env=cli_env(home), cwd=REPO,
                            capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    server.stop()

    after_queue = rows_of(db, "processing_queue")
    after_snapshots = rows_of(db, "snapshots")
    assert {k: after_queue[k] for k in before_queue} == before_queue  # no other row changed
    assert {k: after_snapshots[k] for k in before_snapshots} == before_snapshots
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    new = [r for r in conn.execute("SELECT * FROM processing_queue") if str(r["queue_id"]) not in before_queue]
    expected = {f["file"] for f in manifest["files"]
                if Path(f["file"]).suffix.lower() in EXTENSIONS or is_archive_name(f["file"])}  # fmt: skip
    expected |= set(hostile_archives.CASES)  # archives are queued: one item per model inside
    assert {Path(r["source_id"]).name for r in new} == expected
    for row in new:
        assert row["stage"] in ("stored", "failed"), dict(row)
        assert row["retry_count"] <= row["max_retries"]
        if row["stage"] == "failed":
            assert row["reason"] and row["last_error"], dict(row)
    verdict = {Path(r["source_id"]).name: r for r in new}
    for entry in manifest["files"]:
        row = verdict.get(entry["file"])
        if row is None:
            continue
        if entry["expect"] == "accept":
            assert row["stage"] == "stored", (entry, row["reason"], row["last_error"])
        if entry["expect"] == "reject":
            assert row["stage"] == "failed", entry
    for name, reason in hostile_archives.CASES.items():
        assert (verdict[name]["stage"], verdict[name]["reason"]) == ("failed", reason), dict(verdict[name])
    for snap in conn.execute("SELECT surface_area, volume FROM snapshots"):
        assert math.isfinite(snap["surface_area"]) and math.isfinite(snap["volume"])  # no NaN/inf in the DB
    conn.close()
    assert server.requests == []  # nothing fetched from the network
    escaped = [p for p in tmp_path.rglob("destill3d_*") if bad not in p.parents]
    assert escaped == []
    shutil.rmtree(bad)
