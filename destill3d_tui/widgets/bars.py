"""Horizontal bar charts (statistics by platform / format / label / stage) and confidence bars.

:func:`bar` and :func:`chart_lines` are pure so they are tested without a terminal; the
widgets only style them. Labels are untrusted (platform tags, class names): they are put into
:class:`rich.text.Text` objects, never parsed as markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.widgets import Static

EIGHTHS = " ▏▎▍▌▋▊▉█"
LABEL_WIDTH = 14
"""Label column width: fits "modelnet40" labels and platform ids in an 80-column terminal."""


def bar(fraction: float, width: int) -> str:
    """A bar ``width`` cells wide filled to ``fraction`` (0..1) with eighth-block precision."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def chart_lines(items: Sequence[tuple[str, float]], width: int, label_width: int = LABEL_WIDTH) -> list[str]:
    """One line per (label, value): label, bar scaled to the largest value, value.

    Values are printed as integers when they are whole, else with two decimals.
    """
    if not items:
        return []
    biggest = max(value for _, value in items) or 1.0
    numbers = [f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}" for _, v in items]
    number_width = max(len(n) for n in numbers)
    bar_width = max(width - label_width - number_width - 2, 1)
    lines = []
    for (label, value), number in zip(items, numbers, strict=True):
        name = label if len(label) <= label_width else label[: label_width - 1] + "…"
        lines.append(f"{name:<{label_width}}{bar(value / biggest, bar_width)} {number:>{number_width}}")
    return lines


class BarChart(Static):
    """A titled bar chart; ``set_data`` takes (label, value) pairs, largest first is typical."""

    DEFAULT_CSS = """
    BarChart { height: auto; }
    """

    def __init__(self, title: str, *, limit: int = 8, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title
        self.limit = limit
        self._items: list[tuple[str, float]] = []

    def set_data(self, items: Iterable[tuple[str, float]]) -> None:
        ranked = sorted(((str(k) or "(none)", float(v)) for k, v in items), key=lambda kv: -kv[1])[: self.limit]
        if ranked == self._items:
            return  # the same bars: nothing to draw (the statistics tab re-reads them on every visit)
        lines_before = max(len(self._items), 1)  # height: auto, one line per bar ("no data yet" is one)
        self._items = ranked
        self.refresh(layout=max(len(ranked), 1) != lines_before)  # same height: a repaint, no relayout

    @property
    def items(self) -> list[tuple[str, float]]:
        return list(self._items)

    def render(self) -> Text:
        if not self._items:
            return Text("no data yet", style="italic")
        width = max(self.content_size.width, 20)
        return Text("\n".join(chart_lines(self._items, width)), no_wrap=True, overflow="crop")


def confidence_line(label: str, confidence: float, uncertainty: float | None, width: int = 24) -> Text:
    """``label ████▌   87%  ±0.06`` as plain text (the label is never markup)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{label[:LABEL_WIDTH]:<{LABEL_WIDTH}} ")
    text.append(bar(confidence, width), style="bold")
    text.append(f" {confidence * 100:5.1f}%")
    if uncertainty is not None:
        text.append(f"  ±{uncertainty:.2f}", style="dim")
    return text
