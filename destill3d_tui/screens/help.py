"""F1: every key binding, grouped by where it works."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from ..widgets.text import plain


def key_names(binding: Binding) -> str:
    """``+ / =`` for ``plus,equals_sign``: each key of a binding by its display name."""
    from dataclasses import replace

    from textual.keys import format_key

    if binding.key_display:
        return binding.key_display
    names = []
    for key in binding.key.split(","):
        single = replace(binding, key=key.strip())
        modifiers, name = single.parse_key()
        names.append("+".join([*modifiers, format_key(name)]).replace("ctrl+", "^"))
    return " / ".join(names)


class HelpModal(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("Keys  (escape closes · ctrl+p runs any of these by name)", id="help-title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Where", "Key", "Does")
        for section, bindings in self.sections:
            for binding in bindings:
                table.add_row(plain(section), plain(key_names(binding)),
                              plain(binding.description or binding.action))
        table.focus()
