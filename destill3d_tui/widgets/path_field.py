"""Completion of folder paths for an Input: ``/home/me/mo`` suggests ``/home/me/models/``.

Like the DirectoryTree beside it, it lists folders the user is browsing; it never opens a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester

MAX_LISTED = 2000
"""Entries read from one folder while completing: a huge folder answers after that many, not later."""


def complete_folder(value: str) -> str | None:
    """The first sub-folder (sorted) whose name extends the last part of ``value``, with a trailing ``/``."""
    if not value:
        return None
    typed = Path(value).expanduser()
    parent, prefix = (typed, "") if value.endswith(os.sep) else (typed.parent, typed.name)
    try:
        with os.scandir(parent) as entries:
            names = []
            for n, entry in enumerate(entries):
                if n >= MAX_LISTED:
                    break
                if entry.name.startswith(prefix) and not entry.name.startswith(".") and entry.is_dir():
                    names.append(entry.name)
    except OSError:  # not a folder, gone, or not readable: no suggestion
        return None
    if not names:
        return None
    head = value if value.endswith(os.sep) else value[: len(value) - len(prefix)]
    return head + min(names) + os.sep


class FolderSuggester(Suggester):
    """Suggests the completion of the folder being typed (right arrow accepts it)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_folder(value)
