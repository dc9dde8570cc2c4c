"""Exports and the similarity index at scale, against the exporter this replaced.

    .venv/bin/python bench/scale.py                 # 10,000 snapshots: a few minutes on 2 cores
    .venv/bin/python bench/scale.py --n 100000      # the issue's 100K table
    .venv/bin/python bench/scale.py --db PATH       # reuse a database an earlier run built
    .venv/bin/python bench/scale.py --pg URL --n 100000   # the database figures on PostgreSQL
    .venv/bin/python bench/scale.py --index-n 1000000     # the compressed (IVF-PQ) index only

Database figures (first): `db stats`, `db query`, counts and F4 first pages in-process against
the 200 ms goal, beside the old full-scan path measured in the same run, the planners' plans,
and the CLI's start-up measured separately. The synthetic build goes through the writer's own
multi-row insert (``insert_snapshots``) in batches of 2,000, with a queue row per snapshot.

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
import copy
import dataclasses
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def populate(url: str, n: int, start: int = 0, seed: int = 0, batch: int = 2000) -> float:
    """Inserts n snapshots (ids start..start+n) and their queue rows; returns ms per snapshot.

    Through the store's own multi-row insert (``service.insert_snapshots``, the writer's path:
    blob, denormalised columns, tags, classification, embedding, the totals triggers), ``batch``
    snapshots per transaction; each snapshot's ``processing_queue`` row is stored too (stage
    ``stored``, its downloaded bytes), as a real run leaves one. ``url``: a SQLite path or URL.
    """
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.service import insert_snapshots, tags_committed
    from destill3d_tui.engine.store.snapshot import Prediction, Snapshot

    store = Store(url if "://" in url else f"sqlite:///{url}")
    blobs = [t.to_bytes() for t in templates()]
    copies = [Snapshot.from_bytes(b) for b in blobs]
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((len(LABELS), DIM)).astype(np.float32)
    queue_sql = ("INSERT INTO processing_queue (model_id, platform, source_url, stage, retry_count, snapshot_id, "
                 "bytes_in, file_hash, created_at, updated_at, finished_at) "
                 "VALUES (?, ?, ?, 'stored', 1, ?, ?, ?, ?, ?, ?)")
    if store.is_postgres:
        queue_sql = queue_sql.replace("?", "%s")
    began = time.perf_counter()
    for first in range(start, start + n, batch):
        items, queued = [], []
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        stamp = now if store.is_postgres else now.isoformat(" ")
        vectors = centres[[(i * 7) % len(LABELS) for i in range(first, min(first + batch, start + n))]]
        vectors = vectors + 0.6 * rng.standard_normal(vectors.shape).astype(np.float32)
        for j, i in enumerate(range(first, min(first + batch, start + n))):
            t = i % len(blobs)
            label = LABELS[(i * 7) % len(LABELS)]
            snap = copy.copy(copies[t])
            snap.snapshot_id = str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i, version=4))
            snap.model_id = f"bench-{i}"
            snap.provenance = dataclasses.replace(
                copies[t].provenance, platform=PLATFORMS[i % len(PLATFORMS)], original_format=FORMATS[i % len(FORMATS)],
                license="MIT License", license_spdx="MIT", original_file_hash=f"{i:064x}", title=f"{label} {i}",
                original_file_size=50_000 + (i % 1000) * 100)  # fmt: skip
            snap.predictions = [Prediction(label=label, confidence=0.4 + (i % 60) / 100, taxonomy="modelnet40",
                                           model_name="bench")]  # fmt: skip
            snap.embedding, snap.embedding_model = vectors[j], "bench-encoder"
            items.append((snap, blobs[t]))
            queued.append((snap.model_id, snap.provenance.platform, f"https://example.org/{i}", snap.snapshot_id,
                           snap.provenance.original_file_size, snap.provenance.original_file_hash, stamp, stamp, stamp))
        with store.atomic():
            insert_snapshots(store, items)
            store.database.cursor().executemany(queue_sql, queued)
        tags_committed(store)
    store.close()
    return (time.perf_counter() - began) * 1000 / max(n, 1)


RUNNER = """
import json, resource, sys, time
from destill3d_tui.engine.store.db import Store
try:
    from destill3d_tui.engine.services.dataset import DatasetService
except ImportError:  # a tree from before the services left the store
    from destill3d_tui.engine.store.dataset import DatasetService
from destill3d_tui.engine.store.export import common
db, fmt, out = sys.argv[1:4]
# the old tree lacks formats this checkout registers (webdataset): load only the one asked for
common.available_formats = lambda: {ep.name: ep.load() for ep in common.entry_points(group=common.ENTRY_POINT_GROUP)
                                     if ep.name == fmt}
store = Store("sqlite:///" + db)
def cpu_s():  # this process and the worker processes it waited for
    return sum(t for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for t in resource.getrusage(who)[:2])
began, cpu = time.perf_counter(), cpu_s()
result = DatasetService(store).export(fmt, out)
seconds, cpu = time.perf_counter() - began, cpu_s() - cpu
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


def baseline_version(code: Path) -> int:
    """The newest schema version the tree at ``code`` opens (its migrations' ``LATEST``)."""
    text = (code / "destill3d_tui" / "engine" / "store" / "migrations.py").read_text()
    return int(next(line.split("=")[1] for line in text.splitlines() if line.startswith("LATEST =")))


def baseline_db(db: Path, version: int, into: Path) -> Path:
    """A copy of ``db`` whose stored schema version is ``version``, so an older tree opens it.

    Later versions only add columns, tables, indexes and triggers; the old exporter's queries read
    the snapshots table's columns it knew, so the copy exports the same rows."""
    import shutil
    import sqlite3

    copy = into / f"baseline-v{version}.db"
    shutil.copyfile(db, copy)
    with sqlite3.connect(copy) as con:
        con.execute("DELETE FROM schema_version WHERE version > ?", (version,))
    return copy


def bench_exports(db: Path, n: int, formats: list[str], baseline: str) -> None:
    print(f"\nexport of {n:,} snapshots (fresh process each; peak RSS = its VmHWM)")
    print("(per CPU-s: snapshots per second of CPU time, the rate when the export has its cores to itself;")
    print(" on a shared machine the wall-clock rate is lower by the load)")
    with tempfile.TemporaryDirectory(prefix="d3d-scale-") as tmp:
        old_code = baseline_tree(baseline, Path(tmp) / "old") if baseline else None
        old_db = db
        if old_code is not None:
            version = baseline_version(old_code)
            old_db = baseline_db(db, version, Path(tmp))
            print(f"(old {baseline[:7]} understands schema version {version}: it reads a copy of the database whose "
                  f"stored version is set to {version};\n the later versions add columns, tables and triggers "
                  "its export queries never read)")  # fmt: skip
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{'format':<11}{'exporter':<13}{'snapshots/s':>12}{'per CPU-s':>10}{'seconds':>9}{'peak MB':>9}"
              f"{'files':>7}   goal")  # fmt: skip
        for fmt in formats:
            runs = [("new", ROOT)] + ([("old " + baseline[:7], old_code)] if old_code and fmt != "webdataset" else [])
            new_rates = None
            for label, code in runs:
                got = run_export(db if code is ROOT else old_db, fmt, code, Path(tmp) / f"{fmt}-{label.split()[0]}")
                if "error" in got:
                    print(f"{fmt:<11}{label:<13}  failed: {got['error']}")
                    continue
                rate = got["count"] / got["seconds"]
                ok = "ok" if rate >= GOAL_RATE and got["rss_mb"] < GOAL_RSS_MB else "below"
                per_cpu = got["count"] / max(got["cpu"], 1e-9)
                if label == "new":
                    goal, new_rates = f">= {GOAL_RATE}/s, < {GOAL_RSS_MB} MB: {ok}", (rate, per_cpu)
                elif new_rates:
                    goal = f"new/old: {new_rates[0] / rate:.2f}x wall, {new_rates[1] / per_cpu:.2f}x per CPU-s"
                else:
                    goal = ""
                print(f"{fmt:<11}{label:<13}{rate:>12,.0f}{per_cpu:>10,.0f}{got['seconds']:>9.1f}{got['rss_mb']:>9.0f}"
                      f"{got['files']:>7}   {goal}  (load {os.getloadavg()[0]:.2f})")  # fmt: skip


def bench_decode(db: Path, rows: int = 2000) -> None:
    """Where an export's time goes, per snapshot: the keyset read, the lean decode, the full codec."""
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.export.selection import keyset
    from destill3d_tui.engine.store.export.stream import decode_arrays
    from destill3d_tui.engine.store.snapshot import Snapshot

    store = Store(f"sqlite:///{db}")
    began = time.perf_counter()
    blobs = []
    for batch in keyset(store, "snapshot_data", "1 = 1", [], 1000):
        blobs += [r[1] for r in batch]
        if len(blobs) >= rows:  # stop reading here: the figure is per row read, not per row kept
            break
    read = (time.perf_counter() - began) / len(blobs) * 1e6
    blobs = blobs[:rows]
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


GOAL_RECALL, GOAL_QUERY_MS, GOAL_BYTES = 0.90, 5.0, 100


class _Rows:
    """A VectorSource over an in-memory matrix (the index figures exclude the database)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.name, self.rows = "compressed", rows

    def fingerprint(self) -> str:
        return str(len(self.rows))

    def versions(self) -> dict[str, str]:
        return {f"s{i:08d}": "1" for i in range(len(self.rows))}

    def vectors(self, ids: list[str]) -> np.ndarray:
        return self.rows[[int(i[1:]) for i in ids]]

    def existing(self, ids: list[str]) -> set[str]:
        return set(ids)


def embeddings_like(n: int, seed: int) -> np.ndarray:
    """(n, 256) unit vectors around 1,000 centres, each with its own 8-d spread plus a little noise.

    Encoder embeddings of a shape collection lie near low-dimensional pieces, not in isotropic
    clouds (where every neighbour is as near as any other and recall@10 means nothing).
    """
    from destill3d_tui.engine.store.index import normalise

    centres = np.random.default_rng(7).standard_normal((1000, DIM)).astype(np.float32)
    bases = np.random.default_rng(8).standard_normal((1000, 8, DIM)).astype(np.float32) * 0.35
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 20_000):
        which = rng.integers(0, 1000, min(20_000, n - start))
        spread = np.einsum("nr,nrd->nd", rng.standard_normal((len(which), 8)).astype(np.float32), bases[which])
        noise = 0.03 * rng.standard_normal((len(which), DIM)).astype(np.float32)
        out[start : start + len(which)] = normalise(centres[which] + spread + noise)
    return out


def bench_compressed(n: int, queries: int = 500) -> None:
    """The persisted index above ``index.compress_above``: recall@10 vs exact, query ms, bytes per vector."""
    import faiss

    from destill3d_tui.engine.config import IndexSettings
    from destill3d_tui.engine.store.index import EmbeddingIndex

    base, asked = embeddings_like(n, seed=1), embeddings_like(queries, seed=2)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(base)
    truth = exact.search(asked, 10)[1]
    del exact
    with tempfile.TemporaryDirectory(prefix="d3d-ivf-") as tmp:
        began = time.perf_counter()
        index = EmbeddingIndex(Path(tmp), _Rows(base), IndexSettings(compress_above=min(n, 200_000)))
        index.open()
        index.save()
        built = time.perf_counter() - began
        size = faiss.serialize_index(index._index).nbytes
        file_bytes = index.path.stat().st_size
        times = []
        for q in asked:
            began = time.perf_counter()
            index._search(q[None, :], 10)  # the FAISS search alone (search() also asks the source what exists)
            times.append((time.perf_counter() - began) * 1000)
        found = index.search(asked, 10)
    recall = float(np.mean([len({f"s{i:08d}" for i in want} & {sid for sid, _ in got}) / 10
                            for want, got in zip(truth, found, strict=True)]))  # fmt: skip
    per = size / n
    print(f"\ncompressed index of {n:,} x {DIM} ({index.kind}): built in {built:.0f} s; "
          f"recall@10 {recall:.3f} (goal >= {GOAL_RECALL}); query p50 {statistics.median(times):.2f} ms, "
          f"p99 {np.percentile(times, 99):.2f} ms (goal < {GOAL_QUERY_MS}); FAISS {per:.1f} bytes/vector "
          f"(goal <= {GOAL_BYTES}); file with the id map {file_bytes / n:.0f} bytes/vector")


GOAL_DB_MS = 200


def _ms(fn: Callable[[], Any], repeat: int = 5, warm: bool = True) -> float:
    """Median wall time of ``fn`` in milliseconds (``warm``: after one call that is not counted)."""
    if warm:
        fn()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def _plan(store: Any, sql: str, params: list) -> str:
    """The planner's choice for ``sql``: SQLite's EXPLAIN QUERY PLAN or PostgreSQL's EXPLAIN, one line."""
    if store.is_postgres:
        rows = store.execute("EXPLAIN " + sql, params).fetchall()
        return " / ".join(r[0].strip() for r in rows[:3])
    return " / ".join(r[-1] for r in store.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())


def cli_startup_ms(url: str) -> tuple[float, float]:
    """(interpreter + CLI imports, a whole ``destill3d-tui db stats`` process) in milliseconds."""
    def run(args: list[str]) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, check=True)
        return (time.perf_counter() - began) * 1000

    imports = statistics.median(run(["-c", "import destill3d_tui.cli"]) for _ in range(3))
    command = ["-c", "import sys; from destill3d_tui.cli import main; sys.exit(main())", "--db", url, "db", "stats",
               "--json"]  # fmt: skip
    whole = statistics.median(run(command) for _ in range(3))
    return imports, whole


def bench_db(url: str, n: int) -> None:
    """`db stats`, `db query`, counts and F4 first pages, in-process, against the 200 ms goal."""
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.filters import SnapshotFilter
    from destill3d_tui.engine.store.index import EmbeddingTableSource
    from destill3d_tui.engine.store.service import StoreService, where_sql

    began = time.perf_counter()
    store = Store(url)
    opened = (time.perf_counter() - began) * 1000
    svc = StoreService(store)
    middle = svc.query(limit=1, offset=n // 2)[0]
    source = EmbeddingTableSource(store, "bench-encoder")
    sample = [r.snapshot_id for r in svc.query(limit=40, offset=n // 3)]
    deep = (middle.processed_at, middle.snapshot_id)
    vase, github = SnapshotFilter(label="vase"), SnapshotFilter(platform="github")
    both = SnapshotFilter(label="vase", platform="github")  # no row has both (labels follow i*7, platforms i)
    vase_local = SnapshotFilter(label="vase", platform="local")
    vase_stl = SnapshotFilter(label="vase", source_format="STL")
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
        ("db stats", svc.stats, lambda: svc.stats(scan=True)),
        # the same scans as db stats' old path: above 200K that would be minutes more for no new figure
        ("totals() (F3/F4 running totals)", svc.totals, svc.scan_totals if n <= 200_000 else None),
        ("db query --label vase --limit 20", lambda: svc.query(limit=20, label="vase"), None),
        ("db query --count --label vase", lambda: svc.count(vase), lambda: svc.count_rows(vase)),
        ("count --label vase --platform github (none)", lambda: svc.count(both), None),
        ("F4 first page, no filter", lambda: svc.page(None, 100), None),
        ("F4 first page, label", lambda: svc.page(None, 100, vase), None),
        ("F4 first page, platform", lambda: svc.page(None, 100, github), None),
        ("F4 first page, format", lambda: svc.page(None, 100, SnapshotFilter(source_format="STL")), None),
        ("F4 first page, label+platform (none)", lambda: svc.page(None, 100, both), None),
        ("F4 first page, label+platform (all)", lambda: svc.page(None, 100, vase_local), None),
        ("F4 first page, label+format", lambda: svc.page(None, 100, vase_stl), None),
        (f"F4 page at row {n // 2:,} (keyset)", lambda: svc.page(deep, 100), None),
        (f"db query --offset {n // 2:,} (OFFSET)", lambda: svc.query(limit=100, offset=n // 2), None),
        ("read 40 embeddings by id (IVF-PQ re-rank)", lambda: source.vectors(sample), None),
    ]
    print(f"\ndatabase of {n:,} snapshots ({store.display_url}); in-process, median of 5 warm calls; "
          f"opening the store (schema check) {opened:.0f} ms")
    print(f"{'operation':<40}{'ms':>9}{'old scan ms':>13}   goal < {GOAL_DB_MS} ms")
    for name, new, old in cases:
        ms = _ms(new)
        # the old path once, as it runs: a full scan is as cold as the page cache leaves it
        old_ms = f"{_ms(old, repeat=1, warm=False):>13.0f}" if old else f"{'':>13}"
        print(f"{name:<40}{ms:>9.1f}{old_ms}   {'ok' if ms < GOAL_DB_MS else 'OVER'}")
    print("plans:")
    for name, flt, extra in (("first page, no filter", SnapshotFilter(), ""), ("first page, label", vase, ""),
                             ("keyset page", SnapshotFilter(), "AND processed_at <= ? AND (processed_at < ? OR "
                              "(processed_at = ? AND snapshot_id > ?))")):  # fmt: skip
        where, params = where_sql(store, flt)
        if extra:
            when = deep[0] if store.is_postgres else deep[0].isoformat(" ")
            where, params = f"{where} {extra}", [*params, when, when, when, deep[1]]
        sql = f"SELECT snapshot_id FROM snapshots WHERE {where} ORDER BY processed_at DESC, snapshot_id LIMIT 100"
        print(f"  {name}: {_plan(store, sql, params)}")
    store.close()
    imports, whole = cli_startup_ms(url)
    print(f"CLI start-up (interpreter + imports, excluded above): {imports:.0f} ms; "
          f"a whole `destill3d-tui db stats --json` process: {whole:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="snapshots in the synthetic database")
    parser.add_argument("--db", type=Path, help="use (or build, if missing) this database file")
    parser.add_argument("--pg", metavar="URL", help="build/measure in this PostgreSQL database (db figures only)")
    parser.add_argument("--formats", default="parquet,webdataset", help="comma-separated export formats ('' for none)")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the exporter to compare ('' for none)")
    parser.add_argument("--no-index", action="store_true", help="skip the index figures")
    parser.add_argument("--index-n", type=int, help="only measure the compressed index at this many vectors")
    args = parser.parse_args()
    if args.index_n:
        bench_compressed(args.index_n)
        return
    if args.pg:
        have = _count(args.pg)
        if have < args.n:
            ms = populate(args.pg, args.n - have, start=have)
            print(f"built {args.n - have:,} snapshots through insert_snapshots: {ms:.3f} ms each")
        bench_db(args.pg, max(have, args.n))
        return
    with tempfile.TemporaryDirectory(prefix="d3d-scale-db-") as tmp:
        db = args.db or Path(tmp) / "scale.db"
        if not db.exists():
            ms = populate(str(db), args.n)
            print(f"built {args.n:,} snapshots through insert_snapshots: {ms:.3f} ms each, "
                  f"{db.stat().st_size / 1e6:,.0f} MB")  # fmt: skip
        n = _count(f"sqlite:///{db}")
        bench_db(f"sqlite:///{db}", n)
        bench_decode(db)
        if args.formats:
            bench_exports(db, n, args.formats.split(","), args.baseline)
        if not args.no_index:
            bench_index(db, n)


def _count(url: str) -> int:
    from destill3d_tui.engine.store.db import Store
    from destill3d_tui.engine.store.service import StoreService

    store = Store(url)
    try:
        return StoreService(store).count()
    finally:
        store.close()


if __name__ == "__main__":
    main()
