"""F4 Snapshots: a filterable list; the selected snapshot as a picture, its features,
predictions, provenance, similar models and depth views. The review keys (accept, reject, label,
tag, undo, teach; ``o`` the review order) come from :mod:`.review`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Header, Input, Label, Static, TabbedContent, TabPane

from ..engine.api import FilterError, SnapshotFilter
from ..engine.errors import Destill3DError
from ..engine.text import display, label_with_guess
from ..widgets.bars import confidence_line
from ..widgets.depth_view import DepthView
from ..widgets.pointcloud import PointCloudView
from ..widgets.table import PageTable
from ..widgets.text import human_bytes, plain, set_line
from .base import EngineScreen, fill_table, mode_footer, row_key
from .review import REVIEW_BINDINGS, ReviewKeys, label_cell

TABS = {"tab-cloud": "Cloud", "tab-features": "Features", "tab-predictions": "Predictions",
        "tab-provenance": "Source", "tab-similar": "Similar", "tab-views": "Views"}
"""Tab ids and their names; keys 1-6 open them."""
LIST_PAGE = 200
"""Snapshots listed per page; the filter narrows further in the database, not in the widget."""


class SnapshotsScreen(ReviewKeys, EngineScreen):
    TITLE = "Snapshots"
    CSS_PATH = "../styles/snapshots.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter", key_display="/", tooltip="Filter snapshots by text"),
        Binding("c", "focus_cloud", "Point cloud", tooltip="Focus the point cloud to rotate it"),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="[", show=False),
        Binding("escape", "focus_list", "List", key_display="esc", tooltip="Back to the snapshot list"),
        *[Binding(str(n), f"show_tab('{tab}')", f"{label} tab", show=False)
          for n, (tab, label) in enumerate(TABS.items(), start=1)],
        *REVIEW_BINDINGS,
        Binding("o", "review_order", "Review order", show=False,
                tooltip="List the unreviewed snapshots that most need a person first (o again: back)"),
        Binding("d", "review_keep_one", "Keep one copy", show=False,
                tooltip="Review order: keep this near-duplicate, reject the rest of its cluster"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = 0
        self.page_after: list[Any] = [None]  # the key each page starts after: pages are read by key, not OFFSET
        self.filter_text = ""
        self.current: Any = None
        self.rows: dict[str, Any] = {}
        self.pending_select: str | None = None
        self.total = 0
        self.shown = 0
        self.similar_for: str | None = None  # the snapshot whose similar models the tab shows
        self.marked: set[str] = set()  # rows marked for a review decision
        self.whole_query = False  # the next decision applies to every row of the query
        self.review_order = False  # the list shows the review order instead of the newest first
        self.order_focus: str | None = None  # the row to put the cursor on when the order is read again
        self.order_clusters: dict[str, int] = {}  # review order: snapshot id -> its near-duplicate cluster
        self.order_why: dict[str, str] = {}  # review order: snapshot id -> why it is there (unknown, duplicate...)
        self.list_cells: dict[str, tuple[Text, ...]] = {}  # what the list shows, by snapshot id

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="snap-main"):
            with Vertical(id="snap-left"):
                with Horizontal(classes="field-row"):
                    yield Label("filter", classes="field-label")
                    yield Input(placeholder="title, label, platform, tag:x", id="snap-filter", compact=True)
                yield PageTable(id="snap-list", cursor_type="row", zebra_stripes=True)
                yield Static("", id="snap-count", markup=False)
            with TabbedContent(id="snap-tabs"):
                with TabPane("1 Cloud", id="tab-cloud"):
                    yield PointCloudView(id="cloud")
                with TabPane("2 Features", id="tab-features"):
                    yield VerticalScroll(Static("", id="features"))
                with TabPane("3 Predict", id="tab-predictions"):
                    yield VerticalScroll(Static("", id="predictions"))
                with TabPane("4 Source", id="tab-provenance"):
                    yield VerticalScroll(Static("", id="provenance"))
                with TabPane("5 Similar", id="tab-similar"):
                    yield Static("", id="similar-note", markup=False)
                    yield DataTable(id="similar", cursor_type="row")
                with TabPane("6 Views", id="tab-views"):
                    yield DepthView(id="views")
        yield mode_footer()

    def on_mount(self) -> None:
        # label and confidence first: they keep their width, the title is what a narrow pane crops
        self.query_one("#snap-list", DataTable).add_columns("label", "conf", "title")
        self.query_one("#similar", DataTable).add_columns("similarity", "title", "label")
        self.query_one("#snap-filter", Input).cursor_blink = self.d3d_app.cursor_blink
        self.query_one("#snap-list", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.load_list()

    # ------------------------------------------------------------ the list

    def load_list(self) -> None:
        if not self.bridge.has("db"):
            set_line(self.query_one("#snap-count", Static), "The database is not available in this engine yet.")
            return
        try:  # "vase", or terms as on the CLI: "vase format:stl tag:kitchen"
            flt, offset = SnapshotFilter.parse(self.filter_text), self.page * LIST_PAGE
        except FilterError as exc:
            set_line(self.query_one("#snap-count", Static), f"filter: {exc}")
            return

        if self.review_order:
            self.ask("Could not read the review order",
                     lambda d3d: d3d.review.order_rows(flt, LIST_PAGE), on_reply=self.show_order)
            return
        after, keyset = self.page_after[self.page], self.bridge.has("db.page")

        def fetch(d3d: Any) -> tuple[list[Any], int]:
            rows = d3d.db.page(after, LIST_PAGE, flt) if keyset else \
                d3d.db.query(filter=flt, limit=LIST_PAGE, offset=offset)
            return rows, d3d.db.count(flt)

        self.ask("Could not list the snapshots", fetch, on_reply=self.show_list)

    def recount(self) -> None:
        """Live: the count under the list follows stored items; the page stays as it is."""
        try:
            flt = SnapshotFilter.parse(self.filter_text)
        except FilterError:
            return
        if self.bridge.has("db"):
            self.ask("Could not count the snapshots", lambda d3d: d3d.db.count(flt), on_reply=self.show_total)

    def show_total(self, total: int) -> None:
        self.total = total
        self._show_count()

    def _show_count(self) -> None:
        first, shown, total = self.page * LIST_PAGE, self.shown, self.total
        set_line(self.query_one("#snap-count", Static),
            f"{first + 1 if shown else 0}–{first + shown} of {total:,} · [ ] page" if total else "no snapshots yet")

    def show_list(self, result: tuple[list[Any], int]) -> None:
        rows, self.total = result
        self.shown = len(rows)
        del self.page_after[self.page + 1:]
        if len(rows) == LIST_PAGE:  # a full page: there may be a next one, starting after its last row
            self.page_after.append(row_key(rows[-1]))
        table = self.query_one("#snap-list", DataTable)
        previous = self.current.snapshot_id if self.current is not None else None
        self.rows = {r.snapshot_id: r for r in rows}
        fill_table(table, self.list_cells, [(r.snapshot_id, _list_cells(r)) for r in rows])
        self._show_count()
        target = self.pending_select or previous
        if target in self.rows:
            table.move_cursor(row=table.get_row_index(target))
        if rows and self.current is None and self.pending_select is None:
            self.select(target if target in self.rows else rows[0].snapshot_id)
        self.review_states_for(list(self.rows))
        self.settled("list", self.page)

    @on(Input.Submitted, "#snap-filter")
    @on(Input.Changed, "#snap-filter")
    def _filter(self, event: Input.Changed | Input.Submitted) -> None:
        self.filter_text, self.page, self.page_after = event.value.strip(), 0, [None]
        self.load_list()
        if isinstance(event, Input.Submitted):
            self.query_one("#snap-list", DataTable).focus()

    @on(DataTable.RowHighlighted, "#snap-list")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        table = event.data_table
        if key is None or table.row_count == 0:
            return
        # stale highlights (the list was refilled since) and, while a jump to a similar model or a
        # database row is loading, the list's own cursor do not steer the view
        if key == table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value \
                and self.pending_select in (None, key):
            self.select(key)
        if self.review_order:
            self._show_order_count()

    def select(self, snapshot_id: str) -> None:
        if self.current is not None and self.current.snapshot_id == snapshot_id:
            return
        self.ask("Could not read the snapshot", lambda d3d: d3d.db.get(snapshot_id), on_reply=self.show_snapshot)

    # ------------------------------------------------------------ the selected snapshot

    def show_snapshot(self, snap: Any) -> None:
        if self.pending_select not in (None, snap.snapshot_id):
            return  # an older request answered after a jump was asked for
        self.current = snap
        self.pending_select = None
        geometry = snap.geometry
        self.query_one(PointCloudView).set_cloud(geometry.points, geometry.normals, geometry.curvature)
        self.query_one("#features", Static).update(features_text(snap))
        self.query_one("#predictions", Static).update(predictions_text(snap, self.bridge.has("classify")))
        self.query_one("#provenance", Static).update(provenance_text(snap, self.rows.get(snap.snapshot_id)))
        self.query_one(DepthView).set_views(geometry.views)
        self.similar_for = None
        if self.query_one(TabbedContent).active == "tab-similar":
            self.load_similar(snap.snapshot_id)
        self.settled("snapshot", snap.snapshot_id)

    @on(TabbedContent.TabActivated, "#snap-tabs")
    def _tab_shown(self) -> None:
        """Similar models are searched when their tab is shown: a search per highlighted row would
        keep the index busy while the curator scrolls."""
        if self.query_one(TabbedContent).active == "tab-similar" and self.current is not None \
                and self.similar_for != self.current.snapshot_id:
            self.load_similar(self.current.snapshot_id)

    def load_similar(self, snapshot_id: str) -> None:
        self.similar_for = snapshot_id
        table = self.query_one("#similar", DataTable)
        table.clear()
        note = self.query_one("#similar-note", Static)
        if not self.bridge.has("db.find_similar"):
            note.update("Similar models appear once the similarity index is available in this engine.")
            return
        note.update("enter opens a similar model")

        def fetch(d3d: Any) -> list[tuple[Any, float]] | str:
            try:
                found = d3d.db.find_similar(snapshot_id, k=10)
            except Destill3DError as exc:  # e.g. no vector for this snapshot: say so in the tab
                return f"No similar models: {exc}"
            out = []
            for other_id, score in found:
                try:
                    out.append((d3d.db.get(other_id), score))
                except Exception:  # listed by the index but gone from the table: skip it
                    continue
            return out

        self.ask("Could not find similar models", fetch, on_reply=self.show_similar)

    def show_similar(self, found: list[tuple[Any, float]] | str) -> None:
        table = self.query_one("#similar", DataTable)
        table.clear()
        if isinstance(found, str):
            self.query_one("#similar-note", Static).update(found)
            return
        for snap, score in found:
            if snap.snapshot_id in table.rows:  # two rows holding one blob (copied rows) list it once
                continue
            top = snap.top_prediction()
            table.add_row(plain(f"{score:.3f}"), plain(snap.provenance.title or snap.model_id),
                          plain(top.label if top else "–"), key=snap.snapshot_id)
        if not found:
            self.query_one("#similar-note", Static).update("No similar models (no embeddings yet).")

    @on(DataTable.RowSelected, "#similar")
    def _jump(self, event: DataTable.RowSelected) -> None:
        target = event.row_key.value
        if target:
            self.pending_select = target
            self.current = None
            self.ask("Could not read the snapshot", lambda d3d: d3d.db.get(target), on_reply=self.show_snapshot)
            if target in self.rows:
                table = self.query_one("#snap-list", DataTable)
                table.move_cursor(row=table.get_row_index(target))
            self.query_one(TabbedContent).active = "tab-cloud"

    def open_snapshot(self, snapshot_id: str) -> None:
        """Show ``snapshot_id`` (from another screen), whether or not it is on the current page."""
        self.pending_select, self.current = snapshot_id, None
        self.ask("Could not read the snapshot", lambda d3d: d3d.db.get(snapshot_id), on_reply=self.show_snapshot)
        self.query_one(TabbedContent).active = "tab-cloud"

    # ------------------------------------------------------------ review (keys in .review)

    def review_table(self) -> DataTable:
        return self.query_one("#snap-list", DataTable)

    def review_filter(self) -> SnapshotFilter:
        try:
            return SnapshotFilter.parse(self.filter_text)
        except FilterError:
            return SnapshotFilter()

    def review_total(self) -> int:
        return self.total

    def review_reload(self) -> None:
        self.order_focus = self._cursor_id()  # after a decision: the row the cursor moved on to
        self.load_list()

    def review_moved(self, snapshot_id: str | None) -> None:
        if snapshot_id is not None:  # a list re-read meanwhile (a modal closing resumes the screen) keeps it
            self.pending_select, self.current = snapshot_id, None

    def action_review_order(self) -> None:
        """The unreviewed snapshots in the order that pays (unknown, duplicates, quality, unsure); o again: back."""
        if not self.bridge.has("review"):
            self.notify("Review is not available in this engine.", title="Review", severity="warning")
            return
        self.review_order, self.order_focus = not self.review_order, None
        self.page, self.page_after = 0, [None]
        self.load_list()

    def show_order(self, rows: list[dict[str, Any]]) -> None:
        if not self.review_order:
            return  # the plain list was asked for while the order was being read
        table = self.query_one("#snap-list", DataTable)
        self.rows = dict.fromkeys(r["snapshot_id"] for r in rows)
        self.order_clusters = {r["snapshot_id"]: r["cluster"] for r in rows if r["cluster"] is not None}
        table.clear()
        getattr(self, "list_cells", {}).clear()  # the plain list's cells are gone: its next read rebuilds
        self.order_why = {r["snapshot_id"]: r["why"] for r in rows}
        for r in rows:  # the title first: a narrow pane crops the reason, never the title (issue 19)
            table.add_row(label_cell(r["label"], None), plain(_percent(r["confidence"])),
                          plain(f"{r['title']} · {r['why']}"), key=r["snapshot_id"])
        self.shown = self.total = len(rows)
        if self.order_focus in self.rows:
            table.move_cursor(row=table.get_row_index(self.order_focus))
        self._show_order_count()

    def _show_order_count(self) -> None:
        """The review order's line under the list: how many, and why the row under the cursor is there."""
        table = self.query_one("#snap-list", DataTable)
        if not self.rows:
            set_line(self.query_one("#snap-count", Static), "nothing left to review")
            return
        why = self.order_why.get(self._cursor_id() or "") if table.row_count else None
        set_line(self.query_one("#snap-count", Static),
                 f"{len(self.rows)} to review" + (f" · this: {why}" if why else "") + " · o: the list")

    def action_review_keep_one(self) -> None:
        """In the review order, on a near-duplicate: reject the other members of its cluster in one go."""
        keep = self._cursor_id()
        cluster = self.order_clusters.get(keep) if self.review_order and keep else None
        if cluster is None:
            self.notify("Not a near-duplicate here (o lists them in the review order)", title="Review")
            return
        rest = [sid for sid, c in self.order_clusters.items() if c == cluster and sid != keep]
        self.order_focus = keep
        self._run("Reject", lambda review, ids: review.reject(ids, "duplicate"), rest, self.review_filter())

    # ------------------------------------------------------------ actions

    def action_focus_filter(self) -> None:
        self.query_one("#snap-filter", Input).focus()

    def action_focus_list(self) -> None:
        self.query_one("#snap-list", DataTable).focus()

    def action_focus_cloud(self) -> None:
        self.query_one(TabbedContent).active = "tab-cloud"
        self.query_one(PointCloudView).focus()

    def action_show_tab(self, tab: str) -> None:
        """Open a tab; focus stays on the list (c focuses the cloud), so arrows keep moving the list."""
        self.query_one(TabbedContent).active = tab

    def action_page(self, delta: int) -> None:
        new = min(max(self.page + delta, 0), len(self.page_after) - 1)
        if new != self.page:  # one page at a time: the next page's key comes with this page's rows
            self.page = new
            self.load_list()


def _percent(confidence: float | None) -> str:
    return f"{confidence:.0%}" if confidence is not None else "–"


def _list_cells(r: Any) -> tuple[Text, Text, Text]:
    """Label (``unknown · car?``: the model's guess beside unknown), confidence, title."""
    label = label_with_guess(r.label, r.best_guess) or "–"
    return plain(label), plain(_percent(r.confidence)), plain(r.title or r.model_id)


def _row(text: Text, name: str, value: object) -> None:
    text.append(f"{name:>16}  ", style="bold")
    text.append(f"{display(value)}\n")  # titles, authors, licences, file names: escaped


def features_text(snap: Any) -> Text:
    f, q = snap.features, snap.features.quality
    text = Text()
    _row(text, "points", snap.geometry.point_count)
    _row(text, "vertices / faces", f"{f.vertex_count:,} / {f.face_count:,}")
    _row(text, "bbox min", "  ".join(f"{v:.3g}" for v in f.bbox_min))
    _row(text, "bbox max", "  ".join(f"{v:.3g}" for v in f.bbox_max))
    _row(text, "surface area", f"{f.surface_area:.4g}")
    _row(text, "volume", f"{f.volume:.4g}" if f.is_watertight else "– (not watertight)")
    flags = [name for name in ("empty", "non_manifold", "open", "too_simple", "is_point_cloud") if getattr(q, name)]
    _row(text, "quality flags", ", ".join(flags) or "none")
    _row(text, "degenerate share", f"{q.degenerate_share:.1%}")
    _row(text, "components", q.component_count)
    gf = np.asarray(f.global_features, dtype=float).ravel()
    if gf.size:
        text.append("\nglobal features\n", style="bold")
        for start in range(0, gf.size, 8):
            text.append("  ".join(f"{v:7.3f}" for v in gf[start:start + 8]) + "\n")
    return text


def predictions_text(snap: Any, classifier_available: bool) -> Text:
    if not snap.predictions:
        why = "this snapshot has not been classified yet" if classifier_available else \
            "classification is not available in this engine yet"
        return Text(f"No predictions: {why}.", style="italic")
    ranked = sorted(snap.predictions, key=lambda p: p.rank)
    text = Text()
    text.append(f"{ranked[0].taxonomy} · {ranked[0].model_name or 'unknown model'}\n\n", style="dim")
    for p in ranked:
        text.append_text(confidence_line(p.label, p.confidence, p.uncertainty, width=20))
        text.append("\n")
    if ranked[0].uncertainty is not None:
        text.append("\n± is the model's uncertainty (higher: less sure)", style="dim")
    return text


def provenance_text(snap: Any, row: Any | None) -> Text:
    p = snap.provenance
    text = Text()
    _row(text, "title", p.title or "–")
    _row(text, "author", p.author or "–")
    _row(text, "platform", p.platform)
    _row(text, "licence", p.license or "–")
    _row(text, "SPDX", p.license_spdx or "unknown (never assumed free)")
    _row(text, "source URL", p.source_url or "–")
    _row(text, "original file", p.original_filename or "–")
    _row(text, "format", p.original_format or "–")
    _row(text, "original size", human_bytes(p.original_file_size) if p.original_file_size else "–")
    kept = getattr(row, "snapshot_bytes", None) if row is not None else None
    if kept:
        _row(text, "snapshot size", human_bytes(kept))
        if p.original_file_size:
            _row(text, "compression", f"{p.original_file_size / kept:.1f}×")
    _row(text, "tags", ", ".join(p.tags) or "–")
    _row(text, "model id", snap.model_id or "–")
    _row(text, "snapshot id", snap.snapshot_id)
    return text
