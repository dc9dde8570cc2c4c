"""The row of stage counters at the top of the queue board (QUEUED -> ... -> STORED, FAILED)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static

STAGE_ORDER = ("queued", "acquired", "extracted", "classified", "stored", "failed")
"""The spec's stages in pipeline order; unknown stages the engine reports go after these."""


def ordered_stages(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    known = [(s, int(counts.get(s, 0))) for s in STAGE_ORDER]
    extra = sorted((s, int(n)) for s, n in counts.items() if s not in STAGE_ORDER)
    return known + extra


def board_text(counts: Mapping[str, int], width: int) -> Text:
    """Two lines: stage names and their counts, in equal columns that fit ``width``."""
    stages = ordered_stages(counts)
    column = max(min(width // max(len(stages), 1), 16), 6)
    names, numbers = Text(no_wrap=True), Text(no_wrap=True)
    for stage, count in stages:
        style = "bold" if count else "dim"
        if stage == "failed" and count:
            style = "bold red"
        names.append(stage.upper()[: column - 1].center(column), style="dim")
        numbers.append(f"{count:,}".center(column), style=style)
    names.append("\n")
    names.append_text(numbers)
    return names


class StageBoard(Static):
    """Counts per stage; ``set_counts`` from ``d3d.queue.counts()``."""

    DEFAULT_CSS = """
    StageBoard { height: 2; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.counts: dict[str, int] = {}

    def set_counts(self, counts: Mapping[str, int]) -> None:
        if dict(counts) != self.counts:  # re-read every second on a busy queue: repaint on a change only
            self.counts = dict(counts)
            self.refresh()

    def render(self) -> Text:
        return board_text(self.counts, self.content_size.width or 80)
