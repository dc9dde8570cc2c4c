"""What every mode screen shares: the header and footer, and asking the engine via the bridge."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual import on
from textual.screen import Screen
from textual.widgets import Footer

from ..app import EngineReplied

if TYPE_CHECKING:
    from ..app import Destill3DApp, EngineBridge
    from ..engine.events import Event
    from ..live import LiveState


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
