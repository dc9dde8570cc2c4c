"""What every mode screen shares: the header and footer, and asking the engine via the bridge."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

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


def mode_footer() -> Footer:
    """The footer every mode shares: compact, so the modes and a screen's main keys fit 80 columns
    (F1 lists every key, ctrl+p runs any of them by name)."""
    return Footer(compact=True, show_command_palette=False)


class EngineScreen(Screen):
    """A screen that asks the engine for things; each request names the method its reply goes to."""

    def on_mount(self) -> None:
        self.sub_title = MODE_HINT

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
