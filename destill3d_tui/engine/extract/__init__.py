"""Extraction: any 3D file -> a compact :class:`~destill3d_tui.engine.store.snapshot.Snapshot`.

Kept import-light: child processes and the CLI import this package, so the numeric modules
load only when :func:`extract_file` or :func:`snapshot_from_geometry` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import extract_file, snapshot_from_geometry

__all__ = ["extract_file", "snapshot_from_geometry"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
