"""Per-platform rate budget: tokens left of capacity, paused until when, banned."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.widgets import Static

from .bars import bar
from .text import age


def budget_line(platform: str, tokens: float, capacity: float, paused_until: float | None, banned: bool,
                message: str, now: float, width: int = 80) -> Text:
    """``thingiverse  ██████▌   13/20  paused 2m`` (platform and message are literal text)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{platform[:13]:<13} ")
    fraction = tokens / capacity if capacity else 0.0
    text.append(bar(fraction, 10), style="bold")
    text.append(f" {tokens:>4.0f}/{capacity:<4.0f}")
    if banned:
        text.append(" BANNED", style="bold red")
    elif paused_until and paused_until > now:
        text.append(f" paused {age(paused_until - now)}", style="bold yellow")
    else:
        text.append(" ok", style="green")
    if message:
        text.append(f" {message}", style="dim")
    return text


class RatePanel(Static):
    """Rate budgets of the platforms in use; rows from RateStatus values or RateBudgetChanged events."""

    DEFAULT_CSS = """
    RatePanel { height: auto; }
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.clock = clock
        self.budgets: dict[str, Any] = {}
        # true after local runs too: local files and folders need no budget
        self.note = "No platform budget in use: local files need none; budgets appear with a platform search."
        self._shown: tuple[Any, ...] | None = None  # (signature, note) of what the panel shows

    def set_budgets(self, budgets: dict[str, Any], note: str | None = None) -> None:
        """budgets: platform -> object with tokens, capacity, paused_until, banned, message."""
        self.budgets = dict(budgets)
        if note is not None:
            self.note = note
        # the queue board passes the budgets on every live redraw (10 a second): repaint only on a
        # change, and lay the screen out again only when the number of lines changes
        shown = (self._signature(), self.note)
        if shown != self._shown:
            self.refresh(layout=self._shown is None or len(shown[0]) != len(self._shown[0]))
            self._shown = shown

    def _signature(self) -> tuple[Any, ...]:
        """What the lines show (the budgets may be updated in place: their values, not the objects);
        the second while any platform is paused, whose countdown moves."""
        now = self.clock()
        rows = tuple((platform, getattr(b, "tokens", 0), getattr(b, "capacity", 0), getattr(b, "banned", False),
                      getattr(b, "message", ""), getattr(b, "paused_until", None))
                     for platform, b in sorted(self.budgets.items()))
        paused = any(row[5] and row[5] > now for row in rows)
        return (*rows, int(now)) if paused else rows

    def lines(self) -> Iterable[Text]:
        now = self.clock()
        for platform, b in sorted(self.budgets.items()):
            yield budget_line(platform, float(getattr(b, "tokens", 0)), float(getattr(b, "capacity", 0)),
                              getattr(b, "paused_until", None), bool(getattr(b, "banned", False)),
                              str(getattr(b, "message", "") or ""), now)

    def render(self) -> Text:
        rows = list(self.lines())
        if not rows:
            return Text(self.note, style="italic")
        return Text("\n").join(rows)
