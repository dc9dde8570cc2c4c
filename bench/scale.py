"""Exports and the similarity index at scale, against the exporter this replaced.

    .venv/bin/python bench/scale.py                 # 10,000 snapshots: a few minutes on 2 cores
    .venv/bin/python bench/scale.py --n 100000      # the issue's 100K table
    .venv/bin/python bench/scale.py --db PATH       # reuse a database an earlier run built

Builds a SQLite database of ``--n`` snapshots through the store's own insert
(``service.insert_snapshot``: blob, denormalised columns, tags, classification, embedding):
copies of real extractions from the shared corpus with varied labels, platforms, source formats
and embeddings (clustered 256-d vectors, so neighbours mean something). Then, each export in a
fresh process (peak RSS is that process's ``VmHWM``):

- ``new``: this checkout's streaming, sharded exporter (Parquet, WebDataset);
- ``old``: the exporter of ``--baseline`` (default: the commit before the streaming exporter),
  unpacked with ``git archive`` into a temp folder and imported from there.

Index: first open (build from the embeddings table), a reopen of the saved file, and 1% more
embeddings added then reconciled (incremental) against a full rebuild, each in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = "dd5c159"
"""The last commit with the record-by-record exporter (and the bit-by-bit unpacker)."""
CORPUS = ROOT.parent / "shared" / "corpus"
TEMPLATES = ("stl/teapot.stl", "off/socket.off", "obj/fandisk.obj", "stl/featuretype.STL")
LABELS = ("chair", "table", "lamp", "vase", "bowl", "cup", "sofa", "bed", "desk", "plant")
PLATFORMS = ("thingiverse", "github", "sketchfab", "printables", "local")
FORMATS = ("STL", "OBJ", "PLY", "STEP", "GLB")
DIM = 256
GOAL_RATE, GOAL_RSS_MB = 5000, 1024


def templates() -> list:
    from destill3d_tui.engine.extract import extract_file

    return [extract_file(CORPUS / rel, seed=0) for rel in TEMPLATES]


def populate(db: Path, n: int, start: int = 0, seed: int = 0) -> float:
    """Inserts n rows (ids start..start+n) through insert_snapshot; returns ms per snapshot."""
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.service import insert_snapshot
    from destill3d_tui.engine.store.snapshot import Prediction, Snapshot

    store = Store(f"sqlite:///{db}")
    blobs = [t.to_bytes() for t in templates()]
    copies = [Snapshot.from_bytes(b) for b in blobs]
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((len(LABELS), DIM)).astype(np.float32)
    began = time.perf_counter()
    for first in range(start, start + n, 1000):
        with store.atomic():
            for i in range(first, min(first + 1000, start + n)):
                t = i % len(blobs)
                snap, label = copies[t], LABELS[(i * 7) % len(LABELS)]
                snap.snapshot_id, snap.model_id = str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i,
                                                                version=4)), f"bench-{i}"  # fmt: skip
                p = snap.provenance
                p.platform, p.original_format = PLATFORMS[i % len(PLATFORMS)], FORMATS[i % len(FORMATS)]
                p.license, p.license_spdx, p.original_file_hash = "MIT License", "MIT", f"{i:064x}"
                p.title = f"{label} {i}"
                snap.predictions = [Prediction(label=label, confidence=0.4 + (i % 60) / 100, taxonomy="modelnet40",
                                               model_name="bench")]  # fmt: skip
                vector = centres[LABELS.index(label)] + 0.6 * rng.standard_normal(DIM).astype(np.float32)
                snap.embedding, snap.embedding_model = vector, "bench-encoder"
                insert_snapshot(store, snap, blobs[t])
    store.close()
    return (time.perf_counter() - began) * 1000 / max(n, 1)


RUNNER = """
import json, sys, time
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.dataset import DatasetService
from destill3d_tui.engine.store.export import common
db, fmt, out = sys.argv[1:4]
# the old tree lacks formats this checkout registers (webdataset): load only the one asked for
common.available_formats = lambda: {ep.name: ep.load() for ep in common.entry_points(group=common.ENTRY_POINT_GROUP)
                                     if ep.name == fmt}
store = Store("sqlite:///" + db)
began, cpu = time.perf_counter(), time.process_time()
result = DatasetService(store).export(fmt, out)
seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child reports at least its parent's peak
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"count": result.count, "seconds": seconds, "cpu": cpu, "rss_mb": rss, "files": len(result.files)}))
"""


def run_export(db: Path, fmt: str, code: Path, out: Path) -> dict:
    """One export in a fresh interpreter importing ``destill3d_tui`` from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RUNNER, str(db), fmt, str(out)], env=env, cwd=code,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(commit: str, into: Path) -> Path:
    """The package as it was at ``commit`` (git archive: the work tree and index are untouched)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "destill3d_tui"], capture_output=True,
                             check=True).stdout  # fmt: skip
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def bench_exports(db: Path, n: int, formats: list[str], baseline: str) -> None:
    print(f"\nexport of {n:,} snapshots (fresh process each; peak RSS = its VmHWM)")
    print("(per CPU-s: snapshots per second of CPU time, the rate when the export has its cores to itself;")
    print(" on a shared machine the wall-clock rate is lower by the load)")
    print(f"{'format':<11}{'exporter':<13}{'snapshots/s':>12}{'per CPU-s':>10}{'seconds':>9}{'peak MB':>9}"
          f"{'files':>7}   goal")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="d3d-scale-") as tmp:
        old_code = baseline_tree(baseline, Path(tmp) / "old") if baseline else None
        for fmt in formats:
            runs = [("new", ROOT)] + ([("old " + baseline[:7], old_code)] if old_code and fmt != "webdataset" else [])
            for label, code in runs:
                got = run_export(db, fmt, code, Path(tmp) / f"{fmt}-{label.split()[0]}")
                if "error" in got:
                    print(f"{fmt:<11}{label:<13}  failed: {got['error']}")
                    continue
                rate = got["count"] / got["seconds"]
                ok = "ok" if rate >= GOAL_RATE and got["rss_mb"] < GOAL_RSS_MB else "below"
                goal = f">= {GOAL_RATE}/s, < {GOAL_RSS_MB} MB: {ok}" if label == "new" else ""
                per_cpu = got["count"] / max(got["cpu"], 1e-9)
                print(f"{fmt:<11}{label:<13}{rate:>12,.0f}{per_cpu:>10,.0f}{got['seconds']:>9.1f}{got['rss_mb']:>9.0f}"
                      f"{got['files']:>7}   {goal}")  # fmt: skip


def bench_decode(db: Path, rows: int = 2000) -> None:
    """Where an export's time goes, per snapshot: the keyset read, the lean decode, the full codec."""
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.export.selection import keyset
    from destill3d_tui.engine.store.export.stream import decode_arrays
    from destill3d_tui.engine.store.snapshot import Snapshot

    store = Store(f"sqlite:///{db}")
    began = time.perf_counter()
    blobs = [r[1] for batch in keyset(store, "snapshot_data", "1 = 1", [], 1000) for r in batch][:rows]
    read = (time.perf_counter() - began) / len(blobs) * 1e6
    decode_arrays(blobs[0], False)  # load the compiled kernels before timing
    began = time.perf_counter()
    for blob in blobs:
        decode_arrays(blob, False)
    lean = (time.perf_counter() - began) / len(blobs) * 1e6
    began = time.perf_counter()
    for blob in blobs[:500]:
        Snapshot.from_bytes(bytes(blob))
    full = (time.perf_counter() - began) / min(len(blobs), 500) * 1e6
    print(f"\nper snapshot: keyset read {read:.0f} us, export decode {lean:.0f} us, "
          f"full Snapshot.from_bytes {full:.0f} us")
    store.close()


def bench_index(db: Path, n: int) -> None:
    """First build, reopen, incremental add of 1% vs rebuild (milliseconds)."""
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.index import EmbeddingIndex, EmbeddingTableSource

    with tempfile.TemporaryDirectory(prefix="d3d-idx-") as tmp:
        store = Store(f"sqlite:///{db}")
        source = EmbeddingTableSource(store, "bench-encoder", name_prefix="scale-")
        timings = {}
        began = time.perf_counter()
        index = EmbeddingIndex(Path(tmp), source)
        index.open()
        index.save()
        timings["first open (build)"] = time.perf_counter() - began
        began = time.perf_counter()
        again = EmbeddingIndex(Path(tmp), source)
        again.open()
        timings["reopen saved file"] = time.perf_counter() - began
        extra = max(1, n // 100)
        store.close()
        populate(db, extra, start=n, seed=1)
        store = Store(f"sqlite:///{db}")
        again.source = EmbeddingTableSource(store, "bench-encoder", name_prefix="scale-")
        began = time.perf_counter()
        report = again.reconcile()
        timings[f"add {extra:,} new (reconcile)"] = time.perf_counter() - began
        began = time.perf_counter()
        rebuild = getattr(again, "rebuild", None)
        if rebuild:
            rebuild()
            timings["rebuild (maintenance)"] = time.perf_counter() - began
        print(f"\nindex of {len(again):,} embeddings ({again.kind}); reconcile: {report}")
        for name, seconds in timings.items():
            print(f"  {name:<28}{seconds * 1000:>10.0f} ms")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="snapshots in the synthetic database")
    parser.add_argument("--db", type=Path, help="use (or build, if missing) this database file")
    parser.add_argument("--formats", default="parquet,webdataset", help="comma-separated export formats")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the exporter to compare ('' for none)")
    parser.add_argument("--no-index", action="store_true", help="skip the index figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="d3d-scale-db-") as tmp:
        db = args.db or Path(tmp) / "scale.db"
        if not db.exists():
            ms = populate(db, args.n)
            print(f"built {args.n:,} snapshots through insert_snapshot: {ms:.2f} ms each, "
                  f"{db.stat().st_size / 1e6:,.0f} MB")  # fmt: skip
        bench_decode(db)
        bench_exports(db, args.n, args.formats.split(","), args.baseline)
        if not args.no_index:
            bench_index(db, args.n)


if __name__ == "__main__":
    main()
