"""Kill -9 at any moment, restart, and nothing is lost or stored twice (``--headless`` subprocesses)."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from destill3d_tui.engine.queue import Queue
from destill3d_tui.engine.store.db import Store

from .conftest import REPO, cli, cli_env

POINTS = ("after_claim", "after_acquire_commit", "after_extract_commit", "after_classify_commit",
          "before_store_commit", "after_store_commit")  # fmt: skip
MAX_RETRIES = 10


def headless_args(db: Path, *extra: str) -> list[str]:
    return cli("--db", str(db), "--set", "extraction.target_points=512", "--set", f"pipeline.max_retries={MAX_RETRIES}",
               "--set", "pipeline.lease_seconds=20", "--set", "pipeline.retry_backoff_s=0.05",
               "--workers", "1", *extra, "--headless", "--json")  # fmt: skip


def queue_folder(db: Path, folder: Path) -> list[int]:
    store = Store(f"sqlite:///{db}")
    ids = Queue(store, max_retries=MAX_RETRIES).add_paths([folder])
    store.close()
    return ids


def run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def check_invariants(db: Path, folder: Path) -> list[sqlite3.Row]:
    """0 lost, 0 stored twice, integrity ok, attempts within the limit; returns the queue rows."""
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT * FROM processing_queue ORDER BY queue_id").fetchall()
    assert len(rows) == len(list(folder.iterdir()))
    snaps = conn.execute("SELECT snapshot_id, model_id, original_file_hash FROM snapshots").fetchall()
    assert len({s["original_file_hash"] for s in snaps}) == len(snaps)  # never stored twice
    by_id = {s["snapshot_id"]: s for s in snaps}
    for row in rows:
        assert row["stage"] in ("stored", "failed"), dict(row)  # nothing left half-way
        assert row["retry_count"] <= row["max_retries"] and row["lease_owner"] is None
        if row["stage"] == "stored":
            assert by_id[row["snapshot_id"] or row["duplicate_of"]]["model_id"] is not None
        else:
            assert row["reason"] and row["last_error"]
            assert row["reason"] != "worker_lost" or row["retry_count"] == row["max_retries"]
    stored = [r for r in rows if r["stage"] == "stored" and r["reason"] != "duplicate"]
    assert len(stored) == len(snaps)
    conn.close()
    return rows


def test_crash_at_every_named_point_then_restart(tmp_path: Path, small_dir: Path) -> None:
    db, home = tmp_path / "d.db", tmp_path / "home"
    queue_folder(db, small_dir)
    # Each run dies at one named point, in pipeline order; each crash run stores at most two items.
    plan = ["after_claim:1"] + [f"{point}:2" for point in POINTS[1:]] + [""]
    codes = []
    for crash_at in plan:
        env = cli_env(home, DESTILL3D_CRASH_AT=crash_at) if crash_at else cli_env(home)
        result = run(headless_args(db), env)
        codes.append((crash_at, result.returncode))
    assert [rc for _, rc in codes] == [137] * (len(plan) - 1) + [0], (codes, result.stderr[-2000:])
    rows = check_invariants(db, small_dir)
    assert all(r["stage"] == "stored" for r in rows)
    assert all(r["retry_count"] == 1 for r in rows)  # a runner's crash costs the items it held nothing
    temp = home / "cache" / "tmp"
    assert not any(temp.rglob("q*"))  # temp dirs of stored items are gone, even after a crash before cleanup


def test_sigkill_at_random_moments_then_restart(tmp_path: Path, small_dir: Path) -> None:
    db, home = tmp_path / "d.db", tmp_path / "home"
    queue_folder(db, small_dir)
    rng = random.Random(20240601)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(headless_args(db), env=cli_env(home), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            proc.wait(timeout=rng.uniform(2.0, 9.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
        if proc.returncode == 0:
            break
    final = run(headless_args(db), cli_env(home))
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 1
    rows = check_invariants(db, small_dir)
    assert all(r["stage"] == "stored" for r in rows)


def test_a_runner_killed_while_holding_an_item_costs_it_no_attempt(tmp_path: Path, small_dir: Path) -> None:
    """Finding 13.4: only the item's own worker dying on it is charged (tests/store/test_poison.py)."""
    db, home = tmp_path / "d.db", tmp_path / "home"
    only = tmp_path / "one"
    only.mkdir()
    (small_dir / "Cube.off").rename(only / "Cube.off")
    store = Store(f"sqlite:///{db}")
    Queue(store, max_retries=2).add_paths([only])
    store.close()
    env = cli_env(home, DESTILL3D_CRASH_AT="after_claim:1")
    codes = [run(headless_args(db), env).returncode for _ in range(3)]
    assert codes == [137, 137, 137]
    assert run(headless_args(db), cli_env(home)).returncode == 0
    rows = check_invariants(db, only)
    assert rows[0]["stage"] == "stored" and rows[0]["retry_count"] == 1


def default_args(db: Path, *extra: str) -> list[str]:
    """The runner at the shipped defaults (max_retries 3, 300 s leases, 30 s back-off)."""
    return cli("--db", str(db), "--set", "extraction.target_points=512", "--workers", "1", *extra,
               "--headless", "--json")  # fmt: skip


def count_rows(db: Path, where: str) -> int:
    with contextlib.suppress(sqlite3.Error):
        conn = sqlite3.connect(db, timeout=1)
        n = conn.execute(f"SELECT COUNT(*) FROM processing_queue WHERE {where}").fetchone()[0]
        conn.close()
        return int(n)
    return 0


def wait_until(db: Path, proc: subprocess.Popen[bytes], where: str, more_than: int, timeout: float = 60.0) -> bool:
    """True once more than ``more_than`` queue rows match ``where`` (while the runner lives)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if count_rows(db, where) > more_than:
            return True
        time.sleep(0.05)
    return False


def test_sigkills_while_holding_items_fail_no_valid_item(tmp_path: Path, small_dir: Path) -> None:
    """Finding 13.4 at the shipped defaults: 5 SIGKILLs mid-run, then a clean run stores all of it."""
    db, home = tmp_path / "d.db", tmp_path / "home"
    store = Store(f"sqlite:///{db}")
    Queue(store).add_paths([small_dir])
    store.close()
    rng = random.Random(13_4)
    kills = 0
    for i in range(5):
        proc = subprocess.Popen(default_args(db), env=cli_env(home), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        if i < 4:  # items claimed, not started yet
            wait_until(db, proc, "lease_owner IS NOT NULL", 0)
        else:  # once it stored one of its own: the kill lands mid-extraction or mid-store
            wait_until(db, proc, "stage = 'stored'", count_rows(db, "stage = 'stored'"))
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    final = run(default_args(db), cli_env(home))
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 4
    rows = check_invariants(db, small_dir)
    assert [r["stage"] for r in rows] == ["stored"] * len(rows)
    assert all(r["retry_count"] == 1 for r in rows)


def test_sigterm_drains_and_exit_codes(tmp_path: Path, small_dir: Path) -> None:
    db, home = tmp_path / "d.db", tmp_path / "home"
    queue_folder(db, small_dir)
    proc = subprocess.Popen(headless_args(db), env=cli_env(home), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())  # one item finished: the run is well under way
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]  # 128 + SIGTERM, what service managers expect
    assert first["status"] == "stored"
    conn = sqlite3.connect(db)
    leased = conn.execute("SELECT COUNT(*) FROM processing_queue WHERE lease_owner IS NOT NULL").fetchone()[0]
    stored = conn.execute("SELECT COUNT(*) FROM processing_queue WHERE stage = 'stored'").fetchone()[0]
    conn.close()
    assert leased == 0 and stored >= 1

    # The next run finishes the rest; a garbage file queued meanwhile fails: exit 1, with its JSON line.
    (small_dir / "zz_garbage.stl").write_bytes(b"\x00" * 10)
    queue_folder(db, small_dir)
    result = run(headless_args(db), cli_env(home))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1 and len(lines) == 9 - stored, result.stderr[-2000:]
    (failed,) = [x for x in lines if x["status"] == "failed"]
    assert failed["model_id"].endswith("zz_garbage.stl") and failed["reason"] and failed["attempts"] == 1
    rows = check_invariants(db, small_dir)
    assert sum(r["stage"] == "stored" and r["retry_count"] == 1 for r in rows) == 8

    # A database URL that cannot work is a configuration error: exit 2.
    bad = run(cli("--db", "mysql://nowhere/x", "--headless"), cli_env(home))
    assert bad.returncode == 2 and "database" in bad.stderr.lower()
