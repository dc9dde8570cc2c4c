"""The pipeline in-process: real files through acquire -> extract -> classify -> store."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.events import Event, ItemFailed, ItemStored, PipelineStateChanged, StageStarted
from destill3d_tui.engine.pipeline import Op, WorkItem

from .conftest import make_settings


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def record(d3d: Destill3D) -> list[Event]:
    seen: list[Event] = []
    d3d.events.subscribe(seen.append)
    return seen


def test_folder_goes_in_and_comes_out_stored(db_url: str, small_dir: Path) -> None:
    before = fingerprint(small_dir)
    d3d = Destill3D(make_settings(db_url, **{"pipeline.workers": 2}))
    events = record(d3d)
    summary = d3d.extract.from_directory(small_dir)
    files = sorted(small_dir.iterdir())
    assert summary.stored == len(files) and summary.failed == 0 and not summary.interrupted
    assert d3d.queue.counts()["stored"] == len(files) and d3d.db.count() == len(files)
    stored_events = [e for e in events if isinstance(e, ItemStored)]
    assert sorted(e.queue_id for e in stored_events) == sorted(r.queue_id for r in d3d.queue.list(limit=100))
    for row in d3d.queue.list(limit=100):
        snap = d3d.db.get(row.snapshot_id)
        source = Path(row.source_id)
        assert snap.model_id == row.model_id and snap.provenance.platform == "local"
        assert snap.provenance.original_file_hash == hashlib.sha256(source.read_bytes()).hexdigest()
        assert snap.provenance.original_file_size == source.stat().st_size == row.bytes_in
        assert snap.provenance.title == source.stem and snap.geometry.point_count == 512
        assert row.retry_count == 1 and row.lease_owner is None and row.finished_at is not None
    assert fingerprint(small_dir) == before  # the user's files are never moved, changed or deleted
    temp_root = d3d.pipeline.engine.temp_root
    assert not temp_root.exists() or not any(temp_root.iterdir())
    formats = d3d.db.stats()["by_format"]
    assert formats == {"STL": 3, "OFF": 3, "OBJ": 2}
    assert [e.state for e in events if isinstance(e, PipelineStateChanged)][-1] == "stopped"
    d3d.close()


def test_identical_files_are_stored_once(tmp_path: Path, small_dir: Path) -> None:
    shutil.copy(small_dir / "Cube.off", small_dir / "Cube_copy.off")
    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd.db'}"))
    summary = d3d.extract.from_directory(small_dir)
    assert summary.stored == 9 and summary.duplicates == 1
    assert d3d.db.count() == 8
    (dup,) = [r for r in d3d.queue.list(limit=100) if r.reason == "duplicate"]
    first = d3d.db.get(dup.duplicate_of)
    assert dup.stage == "stored" and dup.snapshot_id is None and first.provenance.original_filename.startswith("Cube")
    assert d3d.db.stats()["duplicates"] == 1
    d3d.close()


def test_near_duplicates_are_skipped_when_asked(tmp_path: Path, small_dir: Path) -> None:
    import numpy as np
    import trimesh

    url = f"sqlite:///{tmp_path / 'd.db'}"
    d3d = Destill3D(make_settings(url, **{"extraction.target_points": 2048}))
    assert d3d.extract.from_directory(small_dir).stored == 8  # skipping is off by default
    d3d.close()
    mesh = trimesh.load(small_dir / "socket.off", force="mesh")
    mesh.apply_transform(trimesh.transformations.rotation_matrix(0.7, [0.3, 1.0, 0.2]))
    mesh.apply_scale(3.0)  # another file (another hash), the same object
    again = tmp_path / "again"
    again.mkdir()
    mesh.export(again / "socket_rotated.stl")
    settings = make_settings(url, **{"extraction.target_points": 2048, "pipeline.skip_near_duplicates": True})
    d3d = Destill3D(settings)
    summary = d3d.extract.from_directory(again)
    assert summary.stored == 1 and summary.duplicates == 1 and d3d.db.count() == 8
    (row,) = [r for r in d3d.queue.list(limit=100) if r.model_id.endswith("socket_rotated.stl")]
    assert row.stage == "stored" and row.reason == "near_duplicate" and row.snapshot_id is None
    original = d3d.db.get(row.duplicate_of)
    assert original.provenance.original_filename == "socket.off"
    assert np.isfinite(original.geometry.points).all()
    d3d.close()


def test_pipeline_adapters_report_rate_budgets_on_the_event_bus(tmp_path: Path) -> None:
    from destill3d_tui.engine.events import RateBudgetChanged

    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd.db'}"))
    seen = record(d3d)
    adapter = d3d.pipeline.engine.stages.acquire_stage.adapter("thingiverse")  # what the acquire stage downloads with
    assert adapter.http.emit is not None
    adapter.http.emit(RateBudgetChanged("thingiverse", tokens=1.0, capacity=300.0))
    assert [e.platform for e in seen if isinstance(e, RateBudgetChanged)] == ["thingiverse"]
    d3d.close()


def test_bad_file_fails_alone_with_its_reason(tmp_path: Path, small_dir: Path) -> None:
    (small_dir / "broken.stl").write_bytes(b"solid broken\n facet normal 0 0 1\n outer loop\n vertex nan")
    (small_dir / "empty.obj").write_bytes(b"")
    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd.db'}"))
    events = record(d3d)
    summary = d3d.extract.from_directory(small_dir)
    assert summary.stored == 8 and summary.failed == 2
    failed = d3d.queue.list(stage="failed")
    assert {Path(r.source_id).name for r in failed} == {"broken.stl", "empty.obj"}
    for row in failed:
        assert row.reason and row.reason != "internal_error" and row.last_error and row.retry_count == 1
    assert sum(isinstance(e, ItemFailed) and not e.will_retry for e in events) == 2
    d3d.close()


def test_pause_resume_and_priority(tmp_path: Path, small_dir: Path) -> None:
    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd.db'}"))
    events = record(d3d)
    files = sorted(small_dir.iterdir())
    d3d.queue.add_paths(files[:4])
    urgent = d3d.queue.add_paths(files[4:], priority=10)
    d3d.pipeline.pause()
    d3d.pipeline.start()
    time.sleep(1.0)
    assert d3d.pipeline.state == "paused" and d3d.queue.counts()["queued"] == 8
    d3d.pipeline.resume()
    summary = d3d.pipeline.run_until_empty()
    assert summary.stored == 8
    started = [e.queue_id for e in events if isinstance(e, StageStarted) and e.stage == "acquire"]
    assert set(started[:4]) == set(urgent)
    d3d.close()


def test_cancel_drains_to_committed_stages(tmp_path: Path, small_dir: Path) -> None:
    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd.db'}"))
    cancel = threading.Event()
    d3d.events.subscribe(lambda e: cancel.set() if isinstance(e, ItemStored) else None)
    d3d.queue.add_paths([small_dir])
    summary = d3d.pipeline.run_until_empty(cancel=cancel)
    assert summary.interrupted and summary.stored >= 1
    rows = d3d.queue.list(limit=100)
    assert all(r.lease_owner is None for r in rows)  # nothing left leased
    assert all(r.retry_count == (1 if r.stage == "stored" else 0) for r in rows)  # unfinished attempts refunded
    assert d3d.db.count() == sum(r.stage == "stored" for r in rows)
    rest = d3d.pipeline.run_until_empty()  # a later run picks up where this one stopped
    assert rest.stored == 8 - summary.stored and d3d.db.count() == 8
    d3d.close()


@pytest.mark.parametrize("stage", ["extracted", "classified"])
def test_restart_resumes_from_the_checkpoint(tmp_path: Path, small_dir: Path, stage: str) -> None:
    """An item committed as extracted/classified is stored from its checkpoint, not extracted again."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    d3d = Destill3D(make_settings(url))
    cancel = threading.Event()
    d3d.queue.add_paths([small_dir / "Cube.off"])
    pipeline = d3d.pipeline.engine

    def stop_after_extract(item: WorkItem) -> None:  # hand the item back right after its extract commit
        cancel.set()
        pipeline.writer.submit(Op("release", item))

    pipeline.stages.classify = stop_after_extract  # type: ignore[method-assign]  # where the writer sends it
    d3d.pipeline.run_until_empty(cancel=cancel)
    (row,) = d3d.queue.list()
    assert row.stage == "extracted" and (Path(row.temp_path) / "snapshot.d3d").is_file()
    if stage == "classified":
        d3d.queue_engine.Q.update(stage="classified").execute()
    d3d.close()

    again = Destill3D(make_settings(url))
    events = record(again)
    summary = again.pipeline.run_until_empty()
    assert summary.stored == 1
    assert not any(isinstance(e, StageStarted) and e.stage == "extract" for e in events)
    assert not Path(row.temp_path).exists()
    again.close()


def test_watch_picks_up_new_work(tmp_path: Path, small_dir: Path) -> None:
    d3d = Destill3D(make_settings(f"sqlite:///{tmp_path / 'd.db'}"))
    cancel = threading.Event()
    stored: list[int] = []
    d3d.events.subscribe(lambda e: stored.append(e.queue_id) if isinstance(e, ItemStored) else None)
    result: list = []
    runner = threading.Thread(target=lambda: result.append(d3d.pipeline.run_until_empty(cancel=cancel, watch=True)))
    runner.start()
    time.sleep(1.0)  # the queue is empty and the pipeline keeps waiting
    assert runner.is_alive() and d3d.pipeline.state in ("idle", "running")
    ids = d3d.queue.add_paths([small_dir / "Cube.off", small_dir / "cube.OBJ"])
    deadline = time.monotonic() + 120
    while len(stored) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    cancel.set()
    runner.join(timeout=120)
    assert sorted(stored) == sorted(ids) and result[0].stored == 2 and result[0].interrupted
    d3d.close()
