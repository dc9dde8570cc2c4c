"""Untrusted text made safe to show: file names, titles, authors, licences, error messages.

A file named ``ESC]0;pwned BEL ESC[2J.stl`` must not retitle or clear the terminal that prints
it, and a name that is not valid UTF-8 must still be shown (and stored) somehow. One function,
:func:`display`, does both for every output: CLI lines, ``--json`` records, headless progress
and the TUI.

What is escaped, and how it looks:

- C0 controls, DEL and C1 controls (``\\x00-\\x1f``, ``\\x7f-\\x9f``): ``\\x1b``, ``\\x9b``
  (``\\t``, ``\\n`` and ``\\r`` keep their short forms; newlines may be kept for multi-line
  messages, see ``newlines``)
- bytes of a name that is not valid UTF-8 (carried by Python as ``surrogateescape``
  surrogates ``U+DC80-U+DCFF``): the byte, ``\\xff``
- other lone surrogates, bidi overrides/isolates/marks and the line/paragraph separators,
  which can reorder or break what follows them on screen: ``\\u202e``

Backslashes are not doubled: this is a form for people to read, not to parse back. Code that
needs the original name keeps the ``str``/``bytes`` it got from the file system.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

# Bidi embeddings/overrides/isolates and marks; U+2028/2029 end a line on some terminals.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
_UNSAFE_KEEP_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def display(value: object, *, newlines: bool = False) -> str:
    """``value`` as text that is safe to print on a terminal or put in a UI.

    Parameters
    ----------
    value : str, bytes (a raw file name: decoded as UTF-8, other bytes kept as ``\\xNN``),
        an ``os.PathLike``, ``None`` (-> ``""``) or anything with a ``str()``
    newlines : keep ``\\n`` as a line break (multi-line messages in a text box); escaped
        otherwise, so one record stays one line
    """
    if value is None:
        return ""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "surrogateescape")
    elif isinstance(value, os.PathLike):
        text = os.fsdecode(value)
    else:
        text = str(value)
    pattern = _UNSAFE_KEEP_NEWLINES if newlines else _UNSAFE
    return pattern.sub(_escape, text)


def is_clean(text: str) -> bool:
    """True when ``text`` needs no escaping (and so encodes as UTF-8 as it is)."""
    return _UNSAFE.search(text) is None


def encodable(text: str) -> bool:
    """True when ``text`` can be stored as UTF-8 (a database column, msgpack, JSON for others)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_name(text: str, replacement: str = "_") -> str:
    """``text`` with every character :func:`display` would escape replaced (for file names)."""
    return _UNSAFE.sub(replacement, text)


def label_with_guess(label: str | None, best_guess: str | None) -> str:
    """``unknown · car?``: a label and, beside an ``unknown``, the model's best guess (issue 12).

    Not escaped: pass the result through :func:`display` (or a caller that does) before showing it.
    """
    if not label:
        return ""
    return f"{label} · {best_guess}?" if best_guess else label


def display_all(value: Any) -> Any:
    """``value`` with :func:`display` applied to every string in it (dict keys included).

    For records that go out as JSON lines: ``json.dumps`` escapes C0 controls but, with
    ``ensure_ascii=False`` or for a reader that prints the decoded value, C1 controls, bidi
    overrides and undecodable bytes would still reach a terminal raw; the display form cannot.
    """
    if isinstance(value, str):
        return display(value)
    if isinstance(value, dict):
        return {display_all(k): display_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [display_all(v) for v in value]
    return value


def path_to_text(path: str | os.PathLike[str]) -> str:
    """A path as a string every store takes (SQLite, PostgreSQL, JSON, msgpack).

    The path itself when it is valid UTF-8; otherwise its ``file://`` URI, whose percent-encoded
    bytes :func:`text_to_path` turns back into the same path. An absolute path never starts with
    ``file://``, so the two forms cannot be confused.
    """
    text = os.fspath(path)
    return text if encodable(text) else Path(text).absolute().as_uri()


def text_to_path(text: str) -> Path:
    """The path :func:`path_to_text` stored (bytes that are not UTF-8 surrogate-escaped again)."""
    if text.startswith("file://"):
        return Path(os.fsdecode(unquote_to_bytes(urlparse(text).path)))
    return Path(text)


_SURROGATES = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with only the bytes that are not UTF-8 escaped (``\\xff``): every database and
    JSON reader takes it. Messages keep their newlines and everything else; they are shown
    through :func:`display` later."""
    return _SURROGATES.sub(_escape, text)
