"""The writer's batch: two near-duplicates committed in one batch store one snapshot (issue 14.10)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.pipeline import Op, Pipeline, WorkItem, extract_in_process

from .conftest import make_settings


def store_op(pipe: Pipeline, row, path: Path, tmp_path: Path) -> Op:  # type: ignore[no-untyped-def]
    """A "store" op as the classify stage hands it to the writer: the snapshot of ``path``, checkpointed."""
    snapshot = extract_in_process(path, pipe.settings)
    snapshot.model_id = row.model_id
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    snapshot.provenance.original_file_hash = sha
    blob = snapshot.to_bytes(pipe.settings.extraction.precision)
    item = WorkItem(row=row, temp_dir=tmp_path / f"q{row.queue_id}", primary=path, sha256=sha,
                    bytes_in=path.stat().st_size, snapshot=snapshot, blob=blob)  # fmt: skip
    return Op("store", item)


def test_two_near_duplicates_in_one_batch_store_one_snapshot(tmp_path: Path, corpus_dir: Path) -> None:
    folder = tmp_path / "twins"
    folder.mkdir()
    first, second = folder / "cube_a.off", folder / "cube_b.off"
    shutil.copy(corpus_dir / "off" / "Cube.off", first)
    second.write_bytes(first.read_bytes() + b"\n# the same cube, saved again\n")  # other bytes, same shape
    settings = make_settings(f"sqlite:///{tmp_path / 'd.db'}", **{"pipeline.skip_near_duplicates": True})
    with Destill3D(settings) as d3d:
        ids = d3d.queue_engine.add_paths([first, second])
        pipe = Pipeline(settings, d3d.store, d3d.queue_engine, d3d.events)
        rows = {r.queue_id: r for r in d3d.queue_engine.claim(pipe.owner, 2)}
        ops = [store_op(pipe, rows[qid], path, tmp_path) for qid, path in zip(ids, (first, second), strict=True)]
        pipe.writer.apply(ops)  # one writer batch, as when both finish classification together
        kept, twin = (d3d.queue_engine.get(qid) for qid in ids)
        assert d3d.store.Snapshots.select().count() == 1
        assert kept.stage == "stored" and kept.snapshot_id and kept.reason is None
        assert twin.stage == "stored" and twin.reason == "near_duplicate" and twin.duplicate_of == kept.snapshot_id
