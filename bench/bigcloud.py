"""Big point-cloud benchmark: a 20M-row ``.xyz`` through the supervised worker, as a user runs it.

Run (from the repo root; not a test, prints its figures)::

    .venv/bin/python bench/bigcloud.py              # 20M rows (~140 MB of text)
    .venv/bin/python bench/bigcloud.py --rows 5e6   # a smaller cloud

ours: ``extract_isolated`` with the shipped worker limits (``extraction.timeout_s`` and
``extraction.memory_limit_mb`` defaults): wall time, the worker's CPU time and peak RSS
(``getrusage`` of the reaped children; a worker that read a 4-point file first, for its own
footprint) and the snapshot's ``processing.transforms``.
peer: ``np.loadtxt`` of the whole file in a child under the same address-space cap (the
simplest whole-file read a user would write), with its wall time and peak RSS.

The file repeats one block of 1M distinct rows, so writing it takes seconds, not minutes.

Measured 2026-12-04 (2 shared cores, load average ~8), 20M rows / 152 MB: ours 19.8 s worker
CPU (76.6 s wall), worker peak RSS 989 MB where a worker that read 4 points peaks at 648 MB,
transforms ['reservoir_sample 20000000 -> 1000000']; peer np.loadtxt 19.9 s, 491 MB. Before
the streaming readers, a 120 MB 20M-row .xyz ran the worker out of memory (issue 14.6; not re-run here).
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BLOCK_ROWS = 1_000_000


def write_cloud(path: Path, rows: int) -> None:
    """``rows`` lines of integer ``x y z`` near a sphere: one block of 1M rows, written again and again."""
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(BLOCK_ROWS, 3))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    buffer = io.BytesIO()
    np.savetxt(buffer, np.round(unit * 10), fmt="%d")  # "-3 5 8": ~7 bytes a row, like the 120 MB file of issue 14
    lines = buffer.getvalue().splitlines(keepends=True)
    with path.open("wb") as fh:
        for start in range(0, rows, BLOCK_ROWS):
            fh.write(b"".join(lines[: min(BLOCK_ROWS, rows - start)]))


def ours(path: Path) -> tuple[float, float, float, list[str]]:
    """(wall s, worker CPU s, worker peak RSS MB, transforms) of one supervised extraction."""
    from destill3d_tui.engine.config import ExtractionSettings
    from destill3d_tui.engine.extract.isolate import extract_isolated
    from destill3d_tui.engine.store.snapshot import Snapshot

    defaults = ExtractionSettings()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    snapshot = extract_isolated(path, timeout_s=defaults.timeout_s, memory_limit_mb=defaults.memory_limit_mb)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    snapshot = snapshot if isinstance(snapshot, Snapshot) else Snapshot.from_bytes(snapshot)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_maxrss / 1024, list(snapshot.processing.transforms)


PEER = """
import resource, sys, time
import numpy as np
cap = int(sys.argv[2]) * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
start = time.perf_counter()
try:
    points = np.loadtxt(sys.argv[1], usecols=(0, 1, 2))
    outcome = f"{len(points)} points"
except MemoryError:
    outcome = "MemoryError"
print(f"{time.perf_counter() - start:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {outcome}")
"""


def peer(path: Path, memory_limit_mb: int) -> str:
    done = subprocess.run([sys.executable, "-c", PEER, str(path), str(memory_limit_mb)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode:
        return f"died (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"
    wall, peak, *outcome = done.stdout.split()
    return f"{wall} s, peak RSS {peak} MB, {' '.join(outcome)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=20e6)
    args = parser.parse_args()
    rows = int(args.rows)
    from destill3d_tui.engine.config import ExtractionSettings

    limit = ExtractionSettings().memory_limit_mb
    with tempfile.TemporaryDirectory(prefix="d3d-bigcloud-") as tmp:
        path = Path(tmp) / "big.xyz"
        start = time.perf_counter()
        write_cloud(path, rows)
        print(f"wrote {rows} rows, {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s")
        small = Path(tmp) / "small.xyz"
        small.write_text("0 0 0\n1 0 0\n0 1 0\n0 0 1\n")
        _, _, base_mb, _ = ours(small)  # a worker's own footprint: imports, kernels
        wall, cpu, peak_mb, transforms = ours(path)
        print(f"ours: extract_isolated {wall:.1f} s wall, {cpu:.1f} s worker CPU, worker peak RSS {peak_mb:.0f} MB "
              f"(a worker that read 4 points: {base_mb:.0f} MB; cap {limit} MB), transforms {transforms}")  # fmt: skip
        print(f"peer: np.loadtxt whole file under the same cap: {peer(path, limit)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
