"""The export dialog: format, path, split, filters; runs the export in a worker with a
progress bar and ends by saying where the files are."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select, Static

from ..bridge import EngineBridge, describe_error
from .base import Settles

if TYPE_CHECKING:
    from ..engine.api import SnapshotFilter
    from ..engine.events import Event
    from ..live import LiveState

EXPORT_SCREEN = "export"
"""The dialog is built once and installed under this name; each ``e`` reopens it (mounting its
fields again cost more than half a second on a busy machine)."""
IDLE_TOTAL = 1
"""The progress bar's total while no export runs: a still, empty bar."""
FORMATS = ("hdf5", "numpy", "parquet", "webdataset", "tfrecord", "modelnet")
POLICIES = ("research", "commercial", "any")


def parse_split(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' or '80/10/10' -> fractions summing to 1; ValueError otherwise."""
    parts = [float(p) for p in text.replace("/", ",").split(",") if p.strip()]
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(f"split needs three non-negative numbers, got {text!r}")
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def export_dialog(app: App, filters: SnapshotFilter) -> ExportModal:
    """The app's export dialog, reopened for ``filters`` (built and installed the first time)."""
    if app.is_screen_installed(EXPORT_SCREEN):
        modal = app.get_screen(EXPORT_SCREEN)
        assert isinstance(modal, ExportModal)
        modal.reopen(filters)
        return modal
    modal = ExportModal(filters)
    app.install_screen(modal, EXPORT_SCREEN)
    return modal


class ExportModal(Settles, ModalScreen[None]):
    # opaque: a see-through modal makes every repaint of the dialog compose and blend the results
    # table behind it (a third of the time the dialog took to appear)
    CSS = "ExportModal { background: $background; }"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "start", "Start export"),
    ]

    def __init__(self, filters: SnapshotFilter, default_dir: str = "") -> None:
        super().__init__()
        self.filters = filters  # exactly what the database screen counted: the export selects the same rows
        self.plan: Any = None  # the engine's ExportPlan for these filters and the chosen licence policy
        self.default_dir = default_dir or str(Path.cwd() / "destill3d_export")
        self.running = False
        self.cancel = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label("Export a dataset", id="export-title")
            yield Static(self._filters_line(), markup=False, id="export-filters")
            yield Static("counting…", markup=False, id="export-count")
            with Horizontal(classes="export-row"):  # the path first: it is what changes most, focus starts there
                yield Label("output folder", classes="export-label")
                yield Input(self.default_dir, placeholder="a folder for the dataset", id="export-path")
            with Horizontal(classes="export-row"):
                yield Label("format", classes="export-label")
                yield Select([(f, f) for f in FORMATS], value="hdf5", allow_blank=False, id="export-format")
                yield Label("split", classes="export-label")
                yield Input("0.8,0.1,0.1", placeholder="train,val,test", id="export-split")
            with Horizontal(classes="export-row"):
                yield Label("licences", classes="export-label")
                yield Select([(p, p) for p in POLICIES], value="research", allow_blank=False, id="export-policy")
                yield Checkbox("depth views", id="export-views")
            # idle: an empty bar; indeterminate (animated, 15 repaints a second) only while exporting
            yield ProgressBar(total=IDLE_TOTAL, id="export-progress", show_eta=False)
            yield Static("ctrl+s starts · escape closes", id="export-status", markup=False)
            with Horizontal(classes="export-row"):
                yield Button("Export", id="export-start", variant="primary")
                yield Button("Close", id="export-close")

    def on_mount(self) -> None:
        cursor_blink = getattr(self.app, "cursor_blink", True)
        for field in self.query(Input).results(Input):
            field.cursor_blink = cursor_blink
        self._recall()
        self.query_one("#export-path", Input).focus()

    def _filters_line(self) -> str:
        return f"filters: {self.filters.describe() if self.filters else 'none (everything)'}"

    def reopen(self, filters: SnapshotFilter) -> None:
        """Show the dialog again for ``filters``: the count, the remembered path and format, focus on the path.
        An export still running (closing cancelled it) keeps its status line until it stops."""
        self.filters = filters
        self.query_one("#export-filters", Static).update(self._filters_line())
        if not self.running:
            self.cancel = threading.Event()
            self.query_one("#export-status", Static).update("ctrl+s starts · escape closes")
            self.query_one(ProgressBar).update(total=IDLE_TOTAL, progress=0)
        self._recall()
        self.query_one("#export-path", Input).focus()

    def on_screen_resume(self) -> None:
        # the fields come up first, then the count (after the refresh that painted them): the
        # engine's pass over the matching rows is a Python thread sharing the interpreter with the UI
        self.call_after_refresh(self.count_plan)

    @property
    def bridge(self) -> EngineBridge:
        return self.app.bridge  # type: ignore[attr-defined,no-any-return]

    def _recall(self) -> None:
        """The path and format last exported from this database (the bridge keeps them per database)."""
        bridge = self.bridge
        path, fmt = bridge.recall("export.path"), bridge.recall("export.format")
        if isinstance(path, str) and path:
            self.query_one("#export-path", Input).value = path
        if fmt in FORMATS:
            self.query_one("#export-format", Select).value = fmt

    @on(Select.Changed, "#export-policy")
    def count_plan(self) -> None:
        """Ask the engine how many objects these filters and this licence policy will write."""
        bridge = self.bridge
        if not bridge.has("db.export_plan"):
            self.query_one("#export-count", Static).update("")
            return
        flt, policy = self.filters, str(self.query_one("#export-policy", Select).value)
        self.query_one("#export-count", Static).update("counting…")
        bridge.request("Could not count the export", lambda d3d: d3d.db.export_plan(flt, license_policy=policy),
                       on_reply=self.show_plan, group="export-plan", exclusive=True)

    def show_plan(self, plan: Any) -> None:
        self.plan = plan
        text = f"{plan.matched:,} match · {plan.count:,} will be written"
        if plan.skipped_total:
            reasons = "; ".join(f"{n} {why}" for why, n in sorted(plan.skipped.items()))
            text += f" · {plan.skipped_total:,} left out ({reasons})"
        self.query_one("#export-count", Static).update(text)
        self.settled("plan", text)

    @on(Button.Pressed, "#export-start")
    def action_start(self) -> None:
        if self.running:
            return
        try:
            split = parse_split(self.query_one("#export-split", Input).value)
        except ValueError as exc:
            self.query_one("#export-status", Static).update(str(exc))
            return
        fmt = str(self.query_one("#export-format", Select).value)
        output = self.query_one("#export-path", Input).value.strip() or self.default_dir
        views = self.query_one("#export-views", Checkbox).value
        policy = str(self.query_one("#export-policy", Select).value)
        flt = self.filters
        bridge = self.bridge
        bridge.remember("export.path", output)
        bridge.remember("export.format", fmt)
        self.running, cancel = True, self.cancel
        self.query_one(ProgressBar).update(total=None, progress=0)  # moving until the first progress event
        self.query_one("#export-status", Static).update(f"exporting {fmt} to {output}… (escape cancels)")

        def export(d3d: Any) -> Any:
            return d3d.db.export(fmt, output, split=split, views=views, license_policy=policy, cancel=cancel,
                                 filter=flt)

        bridge.request("Export failed", export, on_reply=self.show_exported, on_error=self.export_failed,
                       group="export")

    @on(Button.Pressed, "#export-close")
    def action_close(self) -> None:
        if self.running:
            self.cancel.set()  # the export stops between snapshots; files written so far stay
            self.notify("Export cancelled.", title="Export")
        self.dismiss(None)

    def apply_live(self, live: LiveState, events: Iterable[Event]) -> None:
        if live.export_total:
            bar = self.query_one(ProgressBar)
            bar.update(total=live.export_total, progress=live.export_done)

    def export_failed(self, error: Exception) -> None:
        """Shown in this dialog and in the error modal, not swallowed."""
        self.running = False
        text = describe_error(error)
        self.query_one("#export-status", Static).update(f"export failed: {text}")
        self.app.show_error("Export failed", text)  # type: ignore[attr-defined]

    def show_exported(self, result: Any) -> None:
        self.running = False
        if getattr(result, "interrupted", False):
            self.query_one("#export-status", Static).update("export cancelled; files written so far are kept")
            return
        output = getattr(result, "output", None) or getattr(result, "path", None) or \
            self.query_one("#export-path", Input).value
        count = getattr(result, "count", None)
        bar = self.query_one(ProgressBar)
        bar.update(total=max(count or 1, 1), progress=max(count or 1, 1))
        where = f"{count} snapshots written to {output}" if count is not None else f"written to {output}"
        files = [Path(f).name for f in getattr(result, "files", None) or []]
        if files:
            where += " (" + ", ".join(files[:6]) + (", …" if len(files) > 6 else "") + ")"
        skipped = getattr(result, "skipped_total", 0)
        if skipped:
            where += f"; {skipped} left out (licence policy or point count)"
        self.query_one("#export-status", Static).update(where)
        self.notify(where, title="Export finished", markup=False, timeout=15)
