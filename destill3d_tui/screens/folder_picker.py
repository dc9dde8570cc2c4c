"""Pick local files or folders to queue: a DirectoryTree, space marks, enter on a file marks it,
u uses the marks (or the highlighted folder when nothing is marked)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label, Static


class FolderPicker(ModalScreen[list[Path] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel"),
        # priority: the tree would otherwise take space to fold a folder (enter does that too)
        Binding("space", "mark", "Mark", tooltip="Mark the highlighted file or folder", priority=True),
        Binding("u", "use", "Use marked", tooltip="Queue the marked paths (or the highlighted folder)"),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.marked: list[Path] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label("Pick files or folders · space marks · u uses them · escape cancels", id="picker-title")
            yield Input(str(self.root), placeholder="folder (enter jumps there)", id="picker-root", compact=True)
            yield DirectoryTree(self.root, id="picker-tree")
            yield Static("nothing marked: u uses the highlighted folder", id="picker-marked", markup=False)

    def on_mount(self) -> None:
        self.query_one("#picker-root", Input).cursor_blink = getattr(self.app, "cursor_blink", True)
        self.query_one(DirectoryTree).focus()

    @on(Input.Submitted, "#picker-root")
    def _jump(self, event: Input.Submitted) -> None:
        path = Path(event.value).expanduser()
        if path.is_dir():
            tree = self.query_one(DirectoryTree)
            tree.path = path
            tree.focus()
        else:
            self.notify(Text(f"{path} is not a folder").plain, title="Folder", severity="warning", markup=False)

    def _highlighted(self) -> Path | None:
        node = self.query_one(DirectoryTree).cursor_node
        return node.data.path if node is not None and node.data is not None else None

    def action_mark(self) -> None:
        path = self._highlighted()
        if path is None:
            return
        if path in self.marked:
            self.marked.remove(path)
        else:
            self.marked.append(path)
        names = ", ".join(p.name for p in self.marked[-4:])
        self.query_one("#picker-marked", Static).update(f"{len(self.marked)} marked: {names}" if self.marked else
                                                        "nothing marked: u uses the highlighted folder")

    @on(DirectoryTree.FileSelected)
    def _file_selected(self, event: DirectoryTree.FileSelected) -> None:
        if event.path not in self.marked:
            self.action_mark()

    def action_use(self) -> None:
        if self.marked:
            self.dismiss(list(self.marked))
            return
        path = self._highlighted()
        if path is not None:
            self.dismiss([path])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
