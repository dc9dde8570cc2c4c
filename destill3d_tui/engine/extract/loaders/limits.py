"""The caps of spec 13.2 a file's declared sizes must fit, and the one way a check refuses a file.

Read by the prechecks (:mod:`.guards`, :mod:`.gltfcheck`), the readers that count what a file
holds (:mod:`.fbx_legacy`, :mod:`.cad`) and :mod:`..load`; imports nothing of the extraction package.
"""

from __future__ import annotations

from ...errors import FormatError

MAX_VERTICES = 10_000_000  # spec 13.2
MAX_FACES = 20_000_000
MAX_COORDINATE = 1e18  # beyond this, areas and volumes overflow float32 in the features


def refuse(name: str, message: str, reason: str = "parse_error") -> FormatError:
    """The error a check raises for file ``name`` (reason ``parse_error`` unless said otherwise)."""
    return FormatError(f"{name}: {message}", reason=reason)
