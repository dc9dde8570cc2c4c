"""The one error modal: a title, the error text in a read-only text area you can copy from."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, TextArea

from ..engine.text import display


class ErrorModal(ModalScreen[None]):
    """Shows what failed; ``c`` copies the text to the clipboard, escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("c", "copy", "Copy text", tooltip="Copy the error text to the clipboard"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.error_title, self.error_text = display(title), display(text, newlines=True)  # may name files

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Label(self.error_title, id="error-title", markup=False)
            yield TextArea(self.error_text, read_only=True, id="error-text", soft_wrap=True)
            with Horizontal(id="error-buttons"):
                yield Button("Copy", id="error-copy")
                yield Button("Close", id="error-close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#error-close", Button).focus()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.error_text)
        self.notify("Error text copied", title="Clipboard")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "error-copy":
            self.action_copy()
        else:
            self.dismiss(None)
