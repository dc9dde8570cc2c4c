"""Untrusted text (titles, tags, licences, error messages) as plain, never-markup text.

A model named ``[WIP]`` must show as ``[WIP]``: strings handed to a DataTable or Static are
parsed as markup, :class:`rich.text.Text` objects are not. Control characters (a name holding
``ESC]0;...BEL`` would retitle the terminal), bidi overrides and bytes that are not UTF-8 show
escaped (``\x1b``), as everywhere else (:func:`destill3d_tui.engine.text.display`).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from ..engine.text import display


def plain(value: object, style: str = "") -> Text:
    """The value's text, shown literally and escaped; ``None`` shows as an empty cell."""
    return Text(display(value), style=style, no_wrap=True, overflow="ellipsis")


def set_line(widget: Static, content: str | Text) -> None:
    """Show ``content`` in a Static whose size its CSS fixes (``height: 1``, a width from its
    container): nothing when it shows that already, else a repaint of that widget without a
    relayout of the screen (``Static.update`` lays the whole screen out again by default)."""
    shown: Any = widget.content
    if type(shown) is type(content) and shown == content:
        return
    widget.update(content, layout=False)


def human_bytes(count: float | None) -> str:
    """1536 -> '1.5 KiB'."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def age(seconds: float) -> str:
    """Seconds -> '12s', '3m', '5h', '2d' (coarse, so a frozen clock gives stable output)."""
    seconds = max(seconds, 0.0)
    for limit, unit, div in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // div)}{unit}"
    return f"{int(seconds // 86400)}d"
