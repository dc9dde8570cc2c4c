"""Archive handling lives in :mod:`destill3d_tui.engine.extract.archive` (one extension list, shared
with extraction, which unpacks downloads in its isolated worker); these names are re-exported."""

from __future__ import annotations

from ..extract.archive import (
    ARCHIVE_EXTENSIONS,
    MODEL_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    ArchiveLimits,
    choose_model_files,
    is_archive,
    is_archive_name,
    list_models,
    model_format,
    safe_extract,
)

__all__ = [
    "ARCHIVE_EXTENSIONS", "MODEL_EXTENSIONS", "SIDECAR_EXTENSIONS", "ArchiveLimits", "choose_model_files",
    "is_archive", "is_archive_name", "list_models", "model_format", "safe_extract",
]  # fmt: skip
