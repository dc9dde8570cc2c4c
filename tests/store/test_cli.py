"""The queue and db command groups, through the real argument parser and a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from destill3d_tui.cli import main
from destill3d_tui.engine import Destill3D

from .conftest import make_settings


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_queue_and_db_commands(tmp_path: Path, small_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    (small_dir / "[WIP] broken.stl").write_bytes(b"not a mesh at all")
    code, (added,) = run(capsys, "--db", db, "queue", "add", str(small_dir), "--priority", "3", "--json")
    assert code == 0 and added["queued"] == 9
    code, rows = run(capsys, "--db", db, "queue", "list", "--json")
    assert code == 0 and len(rows) == 9 and {r["stage"] for r in rows} == {"queued"}
    assert {r["priority"] for r in rows} == {3}
    victim = rows[-1]["queue_id"]
    assert run(capsys, "--db", db, "queue", "cancel", str(victim))[0] == 0

    d3d = Destill3D(make_settings(f"sqlite:///{db}"))
    summary = d3d.pipeline.run_until_empty()
    d3d.close()
    assert summary.stored == 7 and summary.failed == 1

    code, failed = run(capsys, "--db", db, "queue", "list", "--stage", "failed", "--json")
    reasons = sorted(r["reason"] for r in failed)
    assert len(failed) == 2 and "cancelled" in reasons and all(reasons)
    assert run(capsys, "--db", db, "queue", "retry", "--failed")[0] == 0
    code, queued = run(capsys, "--db", db, "queue", "list", "--stage", "queued", "--json")
    assert len(queued) == 2 and all(r["retry_count"] == 0 for r in queued)
    assert run(capsys, "--db", db, "queue", "retry")[0] == 2  # ids or --failed are required

    code, (stats,) = run(capsys, "--db", db, "db", "stats", "--json")
    assert code == 0 and stats["totals"]["snapshots"] == 7 and stats["by_stage"]["stored"] == 7
    assert stats["bytes_downloaded"] > stats["bytes_kept"] > 0 and stats["compression_ratio"] > 1
    code, found = run(capsys, "--db", db, "db", "query", "--format", "off", "--json")
    assert code == 0 and len(found) == 3 and {r["original_format"] for r in found} == {"OFF"}
    code, (shown,) = run(capsys, "--db", db, "db", "show", found[0]["snapshot_id"][:8], "--json")
    assert shown["snapshot_id"] == found[0]["snapshot_id"] and "snapshot_data" not in shown
    assert run(capsys, "--db", db, "db", "show", "nope")[0] == 1  # not_found
    assert run(capsys, "--db", db, "db", "vacuum")[0] == 0

    # Human output escapes markup: a title like "[WIP] broken" is printed as text.
    assert main(["--db", db, "queue", "list"]) == 0
    assert "[WIP] broken" in capsys.readouterr().out
    assert main(["--db", db, "db", "stats"]) == 0
    assert "Total snapshots: 7" in capsys.readouterr().out
