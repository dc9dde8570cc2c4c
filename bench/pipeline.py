"""Pipeline benchmark: models/day end to end, and database insert time per snapshot.

Run (from the repo root; not a test, prints its figures)::

    .venv/bin/python bench/pipeline.py                  # 24 generated 100K-face binary STLs
    .venv/bin/python bench/pipeline.py --count 60 --pg postgresql://postgres@127.0.0.1:5432/test

Measured in the same run, wall clock:

- ours: ``queue add`` + the pipeline (``--workers 2`` supervised extraction children, views off,
  one batching DB writer), models/day from the steady-state rate (first to last stored item,
  so the children's one-off start-up is not counted) and from the whole run;
- naive: the loop a user would write: one process, ``extract_file`` then an INSERT committed
  per model;
- DB insert per snapshot: ``insert_snapshot`` of real snapshot blobs (tags, classifications,
  embedding) plus the queue row update, batched 100 per transaction as the writer does,
  against one transaction per row. On SQLite, and on PostgreSQL with ``--pg``.

Targets: >= 1,000,000 models/day equivalent (spec asks 10,000); batched insert <= 1 ms.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DAY = 86_400.0


def _mesh_helpers():
    """bumpy_torus / write_binary_stl from bench/extract.py: one mesh generator for both benchmarks."""
    spec = importlib.util.spec_from_file_location("bench_extract", REPO / "bench" / "extract.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def make_stls(folder: Path, count: int, faces: int) -> list[Path]:
    """``count`` distinct binary STLs (a per-file scale makes every sha256 different)."""
    helpers = _mesh_helpers()
    vertices, tris = helpers.bumpy_torus(faces)
    paths = []
    for i in range(count):
        path = folder / f"torus_{i:03d}.stl"
        helpers.write_binary_stl(path, vertices * (1.0 + 0.001 * i), tris)
        paths.append(path)
    return paths


def settings_for(url: str, workers: int):
    from destill3d_tui.engine.config import load_settings

    return load_settings(overrides={"database.url": url, "pipeline.workers": workers,
                                    "extraction.compute_views": False, "classification.enabled": False})  # fmt: skip


# ---------------------------------------------------------------- end to end


def run_ours(files: list[Path], url: str, workers: int) -> dict[str, float]:
    from destill3d_tui.engine import Destill3D
    from destill3d_tui.engine.events import ItemStored

    d3d = Destill3D(settings_for(url, workers))
    stamps: list[float] = []
    lock = threading.Lock()

    def on_event(event: object) -> None:
        if isinstance(event, ItemStored):
            with lock:
                stamps.append(time.perf_counter())

    d3d.events.subscribe(on_event)
    start = time.perf_counter()
    d3d.queue.add_paths(files)
    summary = d3d.pipeline.run_until_empty()
    total = time.perf_counter() - start
    d3d.close()
    assert summary.stored == len(files), summary
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
    return {"total_s": total, "steady_per_s": steady, "overall_per_s": len(files) / total}


def run_naive(files: list[Path], url: str) -> dict[str, float]:
    """One process, one model at a time, one transaction per INSERT."""
    from destill3d_tui.engine.extract import extract_file
    from destill3d_tui.engine.store import service
    from destill3d_tui.engine.store.db import Store

    store = Store(url)
    start = time.perf_counter()
    for path in files:
        snap = extract_file(path)
        snap.model_id = f"naive:{path}"
        with store.atomic():
            service.insert_snapshot(store, snap, snap.to_bytes())
    total = time.perf_counter() - start
    store.close()
    return {"total_s": total, "overall_per_s": len(files) / total}


# ---------------------------------------------------------------- inserts


def clones(template, n: int) -> list:
    """``n`` copies of a real snapshot with fresh ids, hashes, predictions and embeddings."""
    from destill3d_tui.engine.store.snapshot import Prediction

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        snap = copy.copy(template)
        snap.snapshot_id = str(uuid.uuid4())
        snap.model_id = f"bench:{snap.snapshot_id}"
        snap.provenance = copy.copy(template.provenance)
        snap.provenance.original_file_hash = f"{i:064x}"
        snap.provenance.tags = ["bench", f"tag{i % 50}"]
        snap.predictions = [Prediction("chair", 0.8, model_name="bench", rank=1),
                            Prediction("table", 0.1, model_name="bench", rank=2)]  # fmt: skip
        snap.embedding = rng.standard_normal(256).astype(np.float32)
        snap.embedding_model = "bench"
        out.append(snap)
    return out


def insert_ms(url: str, snaps: list, batch: int) -> float:
    """Mean ms per snapshot: insert_snapshot + the queue row marked stored, ``batch`` per transaction."""
    from destill3d_tui.engine.queue import Queue, QueueEntry, make_owner
    from destill3d_tui.engine.store import service
    from destill3d_tui.engine.store.db import STORED, Store

    store = Store(url)
    queue = Queue(store)
    owner = make_owner()
    ids = queue.add_entries([QueueEntry(model_id=s.model_id, platform="bench", source_url="x") for s in snaps])
    queue.claim(owner, len(ids))
    blobs = [s.to_bytes() for s in snaps]  # encoded by the extraction stage, not the writer
    start = time.perf_counter()
    for lo in range(0, len(snaps), batch):
        with store.atomic(immediate=True):
            chunk = zip(ids[lo : lo + batch], snaps[lo : lo + batch], blobs[lo : lo + batch], strict=True)
            for qid, snap, blob in chunk:
                with store.database.atomic():  # the writer's per-item savepoint
                    service.insert_snapshot(store, snap, blob)
                    queue.advance(qid, owner, STORED, snapshot_id=snap.snapshot_id)
        service.tags_committed(store)  # as the writer does after each commit
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed * 1000.0 / len(snaps)


def queue_add_s(url: str, n: int = 20_000) -> tuple[float, float]:
    """Seconds for ``queue.add_entries`` of ``n`` new remote entries, then of the same ``n`` again."""
    from destill3d_tui.engine.queue import Queue, QueueEntry
    from destill3d_tui.engine.store.db import Store

    queue = Queue(Store(url))
    entries = [QueueEntry(model_id=f"bench:{i}", platform="bench", source_url=f"https://x/{i}",
                          metadata={"title": f"item {i}"}) for i in range(n)]  # fmt: skip
    start = time.perf_counter()
    queue.add_entries(entries)
    first = time.perf_counter() - start
    queue.add_entries(entries)
    again = time.perf_counter() - start - first
    queue.store.close()
    return first, again


def pg_database(base: str, suffix: str) -> tuple[str, object]:
    """A throwaway database on the server of ``base`` and a function dropping it."""
    import psycopg

    name = f"destill3d_bench_{os.getpid()}_{suffix}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=" + base.rsplit("/", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.rsplit("/", 1)[0] + "/" + name, drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24, help="generated STL files (default 24)")
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inserts", type=int, default=1000, help="snapshots per insert measurement")
    parser.add_argument("--pg", metavar="URL", help="also measure inserts on PostgreSQL (a throwaway database)")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="d3d-bench-") as tmp:
        root = Path(tmp)
        os.environ["DESTILL3D_HOME"] = str(root / "home")
        folder = root / "stl"
        folder.mkdir()
        files = make_stls(folder, args.count, args.faces)
        print(f"{args.count} binary STLs of {args.faces:,} faces, {files[0].stat().st_size / 1e6:.1f} MB each; "
              f"workers={args.workers}, views off, {os.cpu_count()} CPUs")  # fmt: skip

        ours = run_ours(files, f"sqlite:///{root / 'ours.db'}", args.workers)
        steady, overall = ours["steady_per_s"], ours["overall_per_s"]
        print(f"ours : {steady:.2f} models/s steady = {steady * DAY:,.0f} models/day "
              f"(whole run incl. start-up: {overall * DAY:,.0f}/day, {ours['total_s']:.1f} s)")  # fmt: skip
        if not args.skip_naive:
            naive = run_naive(files, f"sqlite:///{root / 'naive.db'}")
            rate = naive["overall_per_s"]
            print(f"naive: {rate:.2f} models/s = {rate * DAY:,.0f} models/day ({naive['total_s']:.1f} s); "
                  f"ours/naive = {steady / rate:.2f}x")  # fmt: skip

        first, again = queue_add_s(f"sqlite:///{root / 'queue.db'}")
        print(f"queue add (sqlite): 20,000 entries in {first:.2f} s, the same again (all existing) in {again:.2f} s")

        from destill3d_tui.engine.extract import extract_file

        snaps = clones(extract_file(files[0]), args.inserts)
        targets = [("sqlite", f"sqlite:///{root / 'ins_batched.db'}", f"sqlite:///{root / 'ins_naive.db'}", None)]
        if args.pg:
            (b_url, b_drop), (n_url, n_drop) = pg_database(args.pg, "b"), pg_database(args.pg, "n")
            targets.append(("postgresql", b_url, n_url, (b_drop, n_drop)))
        for name, batched_url, naive_url, drops in targets:
            try:
                batched = insert_ms(batched_url, snaps, batch=100)
                one_by_one = insert_ms(naive_url, clones(snaps[0], args.inserts), batch=1)
            finally:
                for drop in drops or ():
                    drop()
            print(f"insert ({name}): {batched:.3f} ms/snapshot batched (100/transaction) vs "
                  f"{one_by_one:.3f} ms one transaction per row ({one_by_one / batched:.1f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
