"""The drill-down for one queue item: why it failed, how often it was tried, when it runs next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ..engine.text import display
from ..widgets.text import age, human_bytes


def _when(value: Any, now: float) -> str:
    if value in (None, "", 0):
        return "–"
    if isinstance(value, datetime):
        # the engine stores naive UTC timestamps
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        delta = value - now
        return f"in {age(delta)}" if delta > 0 else f"{age(-delta)} ago"
    return str(value)


def item_text(row: Any, now: float) -> Text:
    """Every field a curator needs to judge a failure, as literal text."""
    text = Text()
    fields = [
        ("queue id", row.queue_id), ("model", row.model_id), ("title", row.title), ("platform", row.platform),
        ("source", row.source_url), ("stage", row.stage), ("reason", row.reason or "–"),
        ("attempts", f"{row.retry_count} of {row.max_retries}"), ("next retry", _when(row.scheduled_at, now)),
        ("updated", _when(row.updated_at, now)), ("priority", row.priority),
        ("downloaded", human_bytes(row.bytes_in) if row.bytes_in else "–"),
        ("snapshot", row.snapshot_id or "–"), ("duplicate of", row.duplicate_of or "–"),
    ]
    for name, value in fields:
        text.append(f"{name:>13}  ", style="bold")
        text.append(f"{display(value)}\n")  # model ids, titles, URLs: escaped
    if row.last_error:
        text.append("\nmessage\n", style="bold")
        text.append(display(row.last_error, newlines=True))
    return text


class QueueItemModal(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "dismiss", "Close"),
                Binding("c", "copy", "Copy message")]

    def __init__(self, row: Any, now: float) -> None:
        super().__init__()
        self.row, self.now = row, now

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="item-box"):
            yield Label(f"Queue item {self.row.queue_id}", id="item-title")
            yield Static(item_text(self.row, self.now), id="item-text")

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(str(self.row.last_error or ""))
        self.notify("Message copied", title="Clipboard")
