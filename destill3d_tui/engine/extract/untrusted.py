"""Reading untrusted text safely, and saying what is wrong with a file in the file's words.

Shared by the reference checks (:mod:`.references`), the prechecks (:mod:`.loaders.guards`,
:mod:`.loaders.gltfcheck`) and the loaders, so none of them imports another for it. Imports
nothing of the extraction package.
"""

from __future__ import annotations

import json
import re
import traceback
from pathlib import Path

from ..errors import FormatError

_OUT_OF_BOUNDS = re.compile(r"index (-?\d+) is out of bounds for axis \d+ with size (\d+)")


def hardened_xml_parser():
    """An lxml parser that resolves no entities, fetches nothing and refuses huge trees."""
    from lxml import etree

    return etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False
    )


def xml_error(exc: Exception, name: str) -> FormatError:
    """libxml2's own limits (entity amplification, depth) are resource limits, the rest parse errors."""
    text = str(exc).lower()
    if any(word in text for word in ("amplification", "depth", "huge", "too large")):
        return FormatError(f"{name}: XML expands or nests beyond the parser's limits: {exc}", reason="too_large")
    return FormatError(f"{name}: invalid XML: {exc}", reason="parse_error")


def json_problem(exc: Exception) -> str:
    """What is wrong with a JSON text, in the words of the file (where), not an exception's name."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})"
    if isinstance(exc, RecursionError):
        return "arrays or objects nested too deeply to read"
    return str(exc) or type(exc).__name__


def library_failure(path: Path, fmt: str, exc: BaseException) -> str:
    """The library's words for a failure; where it has none (a bare ``assert``), the check that failed."""
    detail = str(exc).strip()
    bounds = _OUT_OF_BOUNDS.search(detail) if isinstance(exc, IndexError) else None
    if bounds:  # numpy's words for a face (or attribute) index past the end of what it indexes
        detail = f"the file uses index {bounds[1]} where only {bounds[2]} entries exist ({detail})"
    elif isinstance(exc, AttributeError) and "'NoneType' object" in detail:  # a lookup found nothing
        detail = f"something the file refers to is not in it ({detail})"
    if not detail:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            detail = f"its check `{(last.line or '').strip()[:120]}` ({Path(last.filename).name}:{last.lineno}) failed"
        else:
            detail = "no detail given"
    return f"{path.name}: cannot read {fmt}: {type(exc).__name__}: {detail}"[:500]
