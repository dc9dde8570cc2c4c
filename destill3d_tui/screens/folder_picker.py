"""Pick local files or folders to queue: a labelled folder field with completion, a DirectoryTree,
backspace goes to the parent folder, space marks, enter on a file marks it, u uses the marks
(or the highlighted folder when nothing is marked)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Input, Label, Static

from ..widgets.path_field import FolderSuggester

LAST_FOLDER = "picker.folder"
"""The bridge's memory key for the folder the picker last showed."""


def start_folder(typed: str, last: str | None) -> Path:
    """Where the picker opens: the folder typed in the Search query (or a typed file's folder),
    else the folder used last, else the working directory."""
    for candidate in (typed.strip(), last or ""):
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        if path.is_dir():
            return path.resolve()
        if path.is_file():
            return path.resolve().parent
    return Path.cwd()


class FolderPicker(ModalScreen[list[Path] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel"),
        # priority: the tree would otherwise take space to fold a folder (enter does that too)
        Binding("space", "mark", "Mark", tooltip="Mark the highlighted file or folder", priority=True),
        Binding("u", "use", "Use marked", tooltip="Queue the marked paths (or the highlighted folder)"),
        # an input takes backspace for itself first, so this only acts on the tree
        Binding("backspace", "parent", "Parent folder", key_display="⌫", tooltip="Show the folder above"),
        Binding("slash,ctrl+l", "focus_path", "Folder field", key_display="/", tooltip="Type a folder"),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.marked: list[Path] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label("Pick files or folders · space marks · u uses them · ⌫ parent folder · / types a folder · "
                        "escape cancels", id="picker-title")
            with Horizontal(classes="field-row"):
                yield Label("folder", classes="field-label")
                yield Input(str(self.root), placeholder="a folder (→ completes, enter opens)", id="picker-root",
                            compact=True, suggester=FolderSuggester())
            yield DirectoryTree(self.root, id="picker-tree")
            yield Static("nothing marked: u uses the highlighted folder", id="picker-marked", markup=False)

    def on_mount(self) -> None:
        self.query_one("#picker-root", Input).cursor_blink = getattr(self.app, "cursor_blink", True)
        self.query_one(DirectoryTree).focus()

    @property
    def folder(self) -> Path:
        """The folder the tree shows."""
        return Path(self.query_one(DirectoryTree).path)

    def show_folder(self, path: Path) -> None:
        """Point the tree (and the field) at ``path``, above the start folder too."""
        self.query_one(DirectoryTree).path = path
        self.query_one("#picker-root", Input).value = str(path)
        bridge = getattr(self.app, "bridge", None)
        if bridge is not None:
            bridge.remember(LAST_FOLDER, str(path))

    @on(Input.Submitted, "#picker-root")
    def _jump(self, event: Input.Submitted) -> None:
        path = Path(event.value).expanduser()
        if path.is_dir():
            self.show_folder(path.resolve())
            self.query_one(DirectoryTree).focus()
        else:
            self.notify(f"{path} is not a folder", title="Folder", severity="warning", markup=False)

    def action_parent(self) -> None:
        folder = self.folder.resolve()
        if folder.parent != folder:
            self.show_folder(folder.parent)

    def action_focus_path(self) -> None:
        self.query_one("#picker-root", Input).focus()

    def _highlighted(self) -> Path | None:
        node = self.query_one(DirectoryTree).cursor_node
        return node.data.path if node is not None and node.data is not None else None

    def action_mark(self) -> None:
        if isinstance(self.focused, Input):  # space typed into the folder field is part of the path
            self.focused.insert_text_at_cursor(" ")
            return
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
