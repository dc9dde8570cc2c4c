"""Poison items: a parser segfault, a hang and a runaway allocation each fail alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from destill3d_tui.engine import Destill3D

from .conftest import make_settings

POISON = {"crash.stl": (b"segfault", "parser_crashed"), "hang.stl": (b"hang", "timeout"),
          "hog.stl": (b"allocate", "memory_limit")}  # fmt: skip


def test_poison_items_fail_alone_after_one_more_try(
    tmp_path: Path, small_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTILL3D_EXTRACT_TARGET", "tests.store.poison_target:extract")
    for name, (body, _reason) in POISON.items():
        (small_dir / name).write_bytes(body)
    settings = make_settings(
        f"sqlite:///{tmp_path / 'd.db'}",
        **{"pipeline.workers": 2, "pipeline.max_retries": 3, "extraction.timeout_s": 5,
           "extraction.memory_limit_mb": 3072},
    )  # fmt: skip
    d3d = Destill3D(settings)
    summary = d3d.extract.from_directory(small_dir)
    assert summary.stored == 8 and summary.failed == 3
    rows = {Path(r.source_id).name: r for r in d3d.queue.list(limit=100)}
    for name, (_body, reason) in POISON.items():
        row = rows[name]
        assert row.stage == "failed" and row.reason == reason, (name, row.reason, row.last_error)
        # The same bytes crashing, hanging or hitting the cap again: final on the second attempt of 3 (13.7).
        assert row.retry_count == 2 and "not retried again" in row.last_error, (name, row.last_error)
    assert all(r.stage == "stored" and r.retry_count == 1 for n, r in rows.items() if n not in POISON)
    assert d3d.db.count() == 8
    d3d.close()
