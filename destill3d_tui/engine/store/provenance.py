"""One provenance mapping: the ``snapshots`` columns an exported object carries, and their keys.

The export's write scan reads :data:`COLUMNS` into each record's metadata (:func:`from_row`,
or :func:`tuple_reader` for its tuple rows);
the attribution manifest takes its credit fields from that metadata (:func:`attribution`). A
provenance field added here reaches both, under one name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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

BEST_GUESS_SQL = (
    "CASE WHEN LOWER(snapshots.label) = 'unknown' THEN (SELECT c.label FROM classifications c "
    "WHERE c.snapshot_id = snapshots.snapshot_id AND LOWER(c.label) <> 'unknown' AND c.model_id IN "
    "(SELECT u.model_id FROM classifications u WHERE u.snapshot_id = snapshots.snapshot_id AND u.rank = 1 "
    "AND LOWER(u.label) = 'unknown') ORDER BY c.rank LIMIT 1) END"
)
"""The model's best guess beside an ``unknown`` label (issue 12), as a SELECT expression.

The classifier stores ``unknown`` at rank 1 and its real ranking after it; the guess is the
highest-ranked real label of the model whose first answer was ``unknown``. NULL on every other
row (a person's label, a confident prediction): only ``unknown`` rows pay the indexed lookup.
"""

ATTRIBUTION = ("title", "author", "source_url", "platform", "license", "license_spdx", "sha256")
"""What the attribution manifest credits each object with, in its order."""


def from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An exported object's provenance from its ``snapshots`` row (missing values as "")."""
    return {key: row[column] or "" for key, column in COLUMNS.items()}


def tuple_reader(columns: Sequence[str], first: int = 0) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """:func:`from_row` for rows fetched as tuples whose values from position ``first`` on are
    ``columns``: the positions are found once, so a row costs no dict of its columns."""
    at = [(key, columns.index(column) + first) for key, column in COLUMNS.items()]
    return lambda row: {key: row[i] or "" for key, i in at}


def attribution(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The credit fields of a record's metadata for the attribution manifest (missing as "")."""
    return {key: metadata.get(key) or "" for key in ATTRIBUTION}
