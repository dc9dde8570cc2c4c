"""Extraction entry points: in-process (``d3d.extract.from_file``) and the isolating supervisor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import Settings
from ..store.snapshot import Snapshot

# ---------------------------------------------------------------- extraction


def extraction_options(settings: Settings, **overrides: Any) -> Any:
    from ..extract.types import ExtractOptions

    return ExtractOptions.from_settings(settings.extraction, **overrides)


def extract_in_process(path: Path, settings: Settings, **opts: Any) -> Snapshot:
    """One file -> Snapshot in this process (``d3d.extract.from_file``)."""
    from ..extract import extract_file

    options = opts.pop("options", None)
    provenance = opts.pop("provenance", None)
    if options is None:
        options = extraction_options(
            settings,
            points=opts.pop("points", None),
            strategy=opts.pop("strategy", None),
            views=opts.pop("views", None),
            seed=opts.pop("seed", None),
            precision=opts.pop("precision", None),
        )
    if opts:
        raise TypeError(f"unknown extraction options: {', '.join(sorted(opts))}")
    snapshot = extract_file(path, options=options, provenance=provenance)
    return snapshot


def make_supervisor(settings: Settings) -> Any:
    from ..extract.isolate import ExtractionSupervisor

    ex = settings.extraction
    # Test hook: DESTILL3D_EXTRACT_TARGET="module:function" runs that in the children instead
    # (tests use it to make a parser segfault, hang or allocate without end).
    target = os.environ.get("DESTILL3D_EXTRACT_TARGET")
    kwargs = {"target": target} if target else {}
    return ExtractionSupervisor(settings.pipeline.workers, ex.timeout_s, ex.memory_limit_mb, nice=ex.worker_nice,
                                **kwargs)
