"""Extraction target for poison-item tests (run in the supervised children).

A file whose first bytes are ``segfault`` kills the child with SIGSEGV, ``hang`` never returns,
``allocate`` grows its address space without end; every other file goes to the real
``extract_file``. Selected with ``DESTILL3D_EXTRACT_TARGET=tests.store.poison_target:extract``.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Any

# Imported when the child starts (before it reports ready), so the per-file timeout measures
# extraction and not a cold import on a busy machine.
from destill3d_tui.engine.extract import core, load  # noqa: F401


def extract(path: str, *, options: Any = None, provenance: Any = None) -> Any:
    head = Path(path).read_bytes()[:16]
    if head.startswith(b"segfault"):
        ctypes.string_at(0)  # a real invalid read, as a native parser bug would do
    if head.startswith(b"hang"):
        while True:
            time.sleep(1)
    if head.startswith(b"allocate"):
        import numpy as np

        hoard = []
        while True:  # untouched pages still count against RLIMIT_AS
            hoard.append(np.empty(256 * 1024 * 1024, dtype=np.uint8))
    return core.extract_file(path, options=options, provenance=provenance)
