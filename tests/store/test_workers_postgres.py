"""Three ``--headless`` workers (separate processes, as separate machines would be) share one
PostgreSQL queue; one is killed mid-run. No item is processed twice and none is lost."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg

from destill3d_tui.engine.queue import Queue
from destill3d_tui.engine.store.db import Store

from .conftest import REPO, cli, cli_env

EXTRA = ("off/ballA.off", "stl/low_poly_benchy.stl", "stl/teapot.stl", "stl/Spider_binary.stl")


def pg_conninfo(url: str) -> str:
    return "host=127.0.0.1 port=5432 user=postgres dbname=" + url.rsplit("/", 1)[1]


def test_three_workers_one_killed(tmp_path: Path, small_dir: Path, corpus_dir: Path, pg_url: str) -> None:
    for rel in EXTRA:
        shutil.copy(corpus_dir / rel, small_dir / Path(rel).name)
    store = Store(pg_url)
    ids = Queue(store).add_paths([small_dir])
    store.close()
    assert len(ids) == 12
    args = cli("--db", pg_url, "--set", "extraction.target_points=512", "--set", "pipeline.lease_seconds=4",
               "--workers", "1", "--headless", "--json")  # fmt: skip
    outs = [tmp_path / f"worker{i}.jsonl" for i in range(3)]
    procs = []
    for i, out in enumerate(outs):
        with out.open("w") as handle:
            procs.append(subprocess.Popen(args, env=cli_env(tmp_path / f"home{i}"), cwd=REPO, stdout=handle,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
    victim = procs[0]
    with psycopg.connect(pg_conninfo(pg_url), autocommit=True) as conn:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill worker 0 while it holds work
            held = conn.execute(
                "SELECT COUNT(*) FROM processing_queue WHERE lease_owner LIKE %s", (f"%:{victim.pid}:%",)
            ).fetchone()[0]
            if held:
                break
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        for proc in procs[1:]:
            assert proc.wait(timeout=300) == 0
        rows = conn.execute("SELECT model_id, stage, retry_count, snapshot_id FROM processing_queue").fetchall()
        handed_back = conn.execute("SELECT COUNT(*) FROM processing_queue WHERE last_error LIKE %s",
                                   (f"handed back uncharged%:{victim.pid}:%",)).fetchone()[0]  # fmt: skip
        snapshots = conn.execute("SELECT model_id, original_file_hash FROM snapshots").fetchall()
    assert held, "worker 0 never held an item before the queue drained"
    assert {stage for _, stage, _, _ in rows} == {"stored"}
    assert len(snapshots) == 12 == len({h for _, h in snapshots})
    assert {m for m, _ in snapshots} == {m for m, _, _, _ in rows}
    assert handed_back >= 1  # the killed worker's items were taken over ...
    assert {r for _, _, r, _ in rows} == {1}  # ... uncharged: one attempt each, the one that stored it
    finished = [json.loads(line)["model_id"] for out in outs for line in out.read_text().splitlines() if line]
    assert len(finished) == len(set(finished))  # no item finished twice
    # Items missing from every output were committed by the victim just before its JSON line.
    unreported = {m for m, _, _, _ in rows} - set(finished)
    assert set(finished) <= {m for m, _, _, _ in rows} and len(unreported) <= 6  # its in-flight capacity
    assert any(out.read_text() for out in outs[1:])  # the survivors took over
