"""Depth views (v, h, w) uint8 drawn with half-block cells: two pixel rows per terminal row."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.color import Color as RichColor
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widget import Widget


def downsample(image: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """(h, w) uint8 -> (rows * 2, cols) uint8 by nearest-neighbour sampling, aspect kept."""
    h, w = image.shape
    scale = min(cols / w, rows * 2 / h)
    out_h, out_w = max(int(h * scale), 1), max(int(w * scale), 1)
    ys = np.minimum((np.arange(out_h) / scale).astype(int), h - 1)
    xs = np.minimum((np.arange(out_w) / scale).astype(int), w - 1)
    return image[np.ix_(ys, xs)]


def half_block_text(image: np.ndarray) -> Text:
    """Each cell is ``▀`` with the upper pixel as foreground and the lower one as background."""
    if image.shape[0] % 2:
        image = np.vstack([image, np.zeros((1, image.shape[1]), dtype=image.dtype)])
    text = Text(no_wrap=True, overflow="crop")
    for r in range(0, image.shape[0], 2):
        for top, bottom in zip(image[r], image[r + 1], strict=True):
            upper, lower = RichColor.from_rgb(top, top, top), RichColor.from_rgb(bottom, bottom, bottom)
            text.append("▀", Style(color=upper, bgcolor=lower))
        if r + 2 < image.shape[0]:
            text.append("\n")
    return text


class DepthView(Widget, can_focus=True):
    """One depth view at a time; ``n`` / ``p`` step through them."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "step(1)", "Next view"),
        Binding("p", "step(-1)", "Previous view"),
    ]
    index: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._views: np.ndarray | None = None

    def set_views(self, views: np.ndarray | None) -> None:
        self._views, self.index = views, 0
        self.refresh()

    def action_step(self, delta: int) -> None:
        if self._views is not None and len(self._views):
            self.index = (self.index + delta) % len(self._views)

    def render(self) -> Text:
        if self._views is None or len(self._views) == 0:
            return Text("No depth views in this snapshot (extract with views on to get them).", style="italic")
        rows = max(self.content_size.height - 1, 1)
        text = half_block_text(downsample(self._views[self.index], self.content_size.width, rows))
        text.append(f"\nview {self.index + 1}/{len(self._views)} · n/p next/previous", style="dim")
        return text
