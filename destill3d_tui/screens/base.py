"""What every mode screen shares: the header and footer, and asking the engine via the bridge."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual import on
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from ..app import EngineReplied

if TYPE_CHECKING:
    from ..app import Destill3DApp, EngineBridge
    from ..engine.events import Event
    from ..live import LiveState


LIVE_COUNT_S = 1.0
"""Counts follow stored/failed events at most once a second: live, yet one query per second at most."""


def changes_counts(events: Iterable[Event]) -> bool:
    """Whether ``events`` stored or failed an item (so snapshot and queue counts moved)."""
    from ..engine.events import ItemFailed, ItemStored

    return any(isinstance(e, ItemStored | ItemFailed) for e in events)


def row_key(row: Any) -> tuple[Any, str]:
    """Where the page after ``row`` starts in the store's newest-first order (``db.page``'s ``after_key``)."""
    return (row.processed_at, row.snapshot_id)


def mode_footer() -> Footer:
    """The footer every mode shares: compact, so the modes and a screen's main keys fit 80 columns
    (F1 lists every key, ctrl+p runs any of them by name)."""
    return Footer(compact=True, show_command_palette=False)


class EngineScreen(Screen):
    """A screen that asks the engine for things; replies arrive as ``got_<tag>(result)`` calls."""

    def on_mount(self) -> None:
        from ..app import MODE_HINT

        self.sub_title = MODE_HINT

    @property
    def d3d_app(self) -> Destill3DApp:
        return self.app  # type: ignore[return-value]

    @property
    def bridge(self) -> EngineBridge:
        return self.d3d_app.bridge

    def ask(self, tag: str, job: Callable[[Any], Any], *, title: str, modal: bool = False,
            exclusive: bool = True) -> None:
        """Run ``job(engine)`` in a worker of group ``<screen>.<tag>``; newer asks replace older ones."""
        group = f"{type(self).__name__}.{tag}"
        self.bridge.call(job, reply_to=self, tag=tag, group=group, title=title, modal=modal, exclusive=exclusive)

    @on(EngineReplied)
    def _replied(self, message: EngineReplied) -> None:
        message.stop()
        handler = getattr(self, f"got_{message.tag}", None)
        if handler is not None:
            handler(message.result)

    def apply_live(self, live: LiveState, events: Iterable[Event]) -> None:
        """Called by the app (inside ``batch_update``) with freshly folded events."""
        if changes_counts(events):
            self.recount_soon()

    def recount_soon(self) -> None:
        """Re-read the counts once, ``LIVE_COUNT_S`` after the first of a burst of events."""
        if getattr(self, "_recount_timer", None) is None:
            self._recount_timer: Timer | None = self.set_timer(LIVE_COUNT_S, self._recount_now)

    def _recount_now(self) -> None:
        self._recount_timer = None
        self.recount()

    def recount(self) -> None:
        """Ask the engine for this screen's counts (never the rows): screens with live counts override it."""
