"""The mode footer: Textual's compact Footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class ModeFooter(Footer):
    """Textual's Footer recomposes (a new widget per key, each restyled) every time the screen's
    bindings are announced, which a mode switch and every focus change do: about half the time a
    switch took. This one recomposes only when the shown keys, their labels or enabled states differ
    from what it shows."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[Any, ...] | None = None

    def shown_keys(self) -> tuple[Any, ...]:
        """What ``compose`` would show: (key, action, description, enabled, tooltip) per shown binding."""
        return tuple((binding.key, binding.action, binding.description, enabled, tooltip)
                     for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show)

    def bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            keys = self.shown_keys()
            if keys == self._shown:
                return
            self._shown = keys
        super().bindings_changed(screen)
