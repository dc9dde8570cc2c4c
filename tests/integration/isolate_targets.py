"""Child-process targets for test_isolate: a file's first word says how the child behaves.

``segfault`` kills the child with SIGSEGV, ``hang`` sleeps forever, ``allocate`` grows memory
without end; anything else is loaded with ``load_geometry`` and returned as a small Snapshot
(a file named ``niceness*`` reports the child's scheduling niceness in ``model_id``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any


def behave(path: str, *, options: Any = None, provenance: Any = None) -> Any:
    head = Path(path).read_bytes()[:16]
    if head.startswith(b"segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if head.startswith(b"hang"):
        while True:
            time.sleep(1)
    if head.startswith(b"allocate"):
        import numpy as np

        hoard = []
        while True:  # untouched pages still count against RLIMIT_AS, and reach it quickly
            hoard.append(np.empty(256 * 1024 * 1024, dtype=np.uint8))
    if head.startswith(b"writefile"):
        Path("written_by_child.txt").write_text("inside the item temp dir")
    snap = small_snapshot(path, options)
    if Path(path).name.startswith("niceness"):
        snap.model_id = f"nice:{os.nice(0)}"  # os.nice(0) reads this process's niceness
    return snap


def small_snapshot(path: str, options: Any = None) -> Any:
    """A Snapshot from the loaded vertices (first 64), enough to check the round trip."""
    import numpy as np

    from destill3d_tui.engine.extract.load import load_geometry
    from destill3d_tui.engine.store.snapshot import Features, Geometry, Provenance, Snapshot

    geometry = load_geometry(path, options)
    points = geometry.vertices[:64].astype(np.float32)
    n = len(points)
    normals = np.tile(np.array([0, 0, 1], dtype=np.float32), (n, 1))
    snap = Snapshot(
        geometry=Geometry(points=points, normals=normals, curvature=np.zeros(n, dtype=np.float32)),
        features=Features(global_features=np.zeros(32, dtype=np.float32), vertex_count=len(geometry.vertices)),
        provenance=Provenance(original_filename=Path(path).name, original_format=geometry.format),
    )
    snap.model_id = f"local:{os.getcwd()}"  # lets the test see which directory the child worked in
    return snap
