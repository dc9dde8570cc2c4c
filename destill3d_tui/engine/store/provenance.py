"""One provenance mapping: the ``snapshots`` columns an exported object carries, and their keys.

The export's write scan reads :data:`COLUMNS` into each record's metadata (:func:`from_row`);
the attribution manifest takes its credit fields from that metadata (:func:`attribution`). A
provenance field added here reaches both, under one name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS: dict[str, str] = {
    "model_id": "model_id",
    "platform": "platform",
    "title": "title",
    "author": "author",
    "source_url": "source_url",
    "license": "license",
    "license_spdx": "license_spdx",
    "original_format": "original_format",
    "label_model": "label_model",
    "sha256": "original_file_hash",  # of the source file, so a user can check the one they fetch
}
"""Record metadata key -> ``snapshots`` column."""

ATTRIBUTION = ("title", "author", "source_url", "platform", "license", "license_spdx", "sha256")
"""What the attribution manifest credits each object with, in its order."""


def from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An exported object's provenance from its ``snapshots`` row (missing values as "")."""
    return {key: row[column] or "" for key, column in COLUMNS.items()}


def attribution(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The credit fields of a record's metadata for the attribution manifest (missing as "")."""
    return {key: metadata.get(key) or "" for key in ATTRIBUTION}
