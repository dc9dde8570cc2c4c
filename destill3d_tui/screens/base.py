"""What every mode screen shares: the header and footer, and asking the engine via the bridge."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from textual import events
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, TabbedContent

from ..widgets.footer import ModeFooter

if TYPE_CHECKING:
    from ..bridge import BridgedApp, EngineBridge, Reply
    from ..engine.events import Event
    from ..live import LiveState


MODE_KEYS = (("f2", "search", "Search"), ("f3", "queue", "Queue"), ("f4", "snapshots", "Snapshots"),
             ("f5", "database", "Database"))
"""(key, mode, label) of the four modes; the app binds them."""
MODE_HINT = " ".join(f"{key.upper()} {label.lower()}" for key, _, label in MODE_KEYS)
"""Shown in every mode's header: the mode keys without spending footer columns."""
LIVE_COUNT_S = 1.0
"""Counts follow stored/failed events at most once a second: live, yet one query per second at most."""


def changes_counts(events: Iterable[Event]) -> bool:
    """Whether ``events`` stored or failed an item (so snapshot and queue counts moved)."""
    from ..engine.events import ItemFailed, ItemStored

    return any(isinstance(e, ItemStored | ItemFailed) for e in events)


def row_key(row: Any) -> tuple[Any, str]:
    """Where the page after ``row`` starts in the store's newest-first order (``db.page``'s ``after_key``)."""
    return (row.processed_at, row.snapshot_id)


def fill_table(table: DataTable, shown: dict[str, tuple[Any, ...]], rows: list[tuple[str, tuple[Any, ...]]]) -> bool:
    """Show ``rows`` (key, cells) in ``table``; ``shown`` is what it shows now, kept up to date.

    The same keys in the same order update only the cells that changed: a re-read that finds the
    page as it was (a mode switch, a live refresh) costs no redraw, which is most of what a key
    costs. Other keys rebuild the table. Returns whether it was rebuilt (the cursor went to row 0).
    """
    keys = [key for key, _ in rows]
    if keys == list(shown):
        for key, cells in rows:
            if shown[key] != cells:
                for column, old, new in zip(table.columns, shown[key], cells, strict=True):
                    if old != new:
                        table.update_cell(key, column, new)
                shown[key] = cells
        return False
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    shown.clear()
    shown.update(rows)
    return True


def mode_footer() -> Footer:
    """The footer every mode shares: compact, so the modes and a screen's main keys fit 80 columns
    (F1 lists every key, ctrl+p runs any of them by name); redrawn only when its keys change."""
    return ModeFooter(compact=True, show_command_palette=False)


class Settles:
    """Stamps what a screen has shown, once it is on the terminal: ``stamps[what] = (perf_counter, token)``.

    ``bench/tui.py`` times a key from its press to the stamp of what the key asked for (the rows of
    the next page, the opened snapshot, the tab) instead of waiting for the process to look idle,
    which a busy pipeline never lets it do.
    """

    stamps: dict[str, tuple[float, Any]]

    def settled(self, what: str, token: Any = None) -> None:
        """``what`` (with ``token``: which page, which snapshot) is in the widgets: stamp it after the refresh."""
        self.call_after_refresh(self._stamp, what, token)  # type: ignore[attr-defined]

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        # Textual restyles every node of a resumed screen (and DataTables drop their render caches):
        # a third of a mode switch. A theme or CSS change since the screen was last shown is applied
        # by switch_mode and push_screen themselves (the screen's css update count), so the restyle
        # only repeats what is there.
        if self._css_update_count == self.app._css_update_count:  # type: ignore[attr-defined]
            event.refresh_styles = False
        if not getattr(self, "_heap_settled", False):
            # built once and kept: the widgets leave the cyclic collector's full sweeps (as the app's
            # start does, app.settle_heap), which stop every thread for as long as they walk
            self._heap_settled = True
            self.call_after_refresh(gc.freeze)  # type: ignore[attr-defined]
        self.settled("resumed")

    def _stamp(self, what: str, token: Any) -> None:
        if not hasattr(self, "stamps"):
            self.stamps = {}
        self.stamps[what] = (time.perf_counter(), token)


class EngineScreen(Settles, Screen):
    """A screen that asks the engine for things; each request names the method its reply goes to."""

    def on_mount(self) -> None:
        self.sub_title = MODE_HINT


    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.settled("tab", event.tabbed_content.active)

    @property
    def d3d_app(self) -> BridgedApp:
        return cast("BridgedApp", self.app)

    @property
    def bridge(self) -> EngineBridge:
        return self.d3d_app.bridge

    def ask(self, title: str, job: Callable[..., Any], *args: Any, on_reply: Reply, on_error: Reply | None = None,
            modal: bool = False, exclusive: bool = True) -> None:
        """Run ``job(engine, *args)`` off the UI thread; ``on_reply(result)`` runs here when it is done.

        Requests with the same ``on_reply`` form one worker group, ``<Screen>.<on_reply>``
        (:meth:`request_group`): with ``exclusive``, a newer request replaces the older one's reply.
        """
        self.bridge.request(title, job, *args, on_reply=on_reply, on_error=on_error, owner=self,
                            group=self.request_group(on_reply), modal=modal, exclusive=exclusive)

    def request_group(self, on_reply: Reply) -> str:
        return f"{type(self).__name__}.{getattr(on_reply, '__name__', 'reply')}"

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
