"""F5 Database: a query form, lazily paged results, statistics as bar charts, export; the review
keys on the results (:mod:`.review`)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import DataTable, Header, Input, Label, Static, TabbedContent, TabPane

from ..engine.api import FilterError, SnapshotFilter
from ..engine.text import label_with_guess
from ..widgets.bars import BarChart
from ..widgets.table import PageTable
from ..widgets.text import human_bytes, plain, set_line
from .base import EngineScreen, fill_table, mode_footer, row_key
from .review import REVIEW_BINDINGS, ReviewKeys

PAGE_SIZE = 100
"""Rows fetched per page: one LIMIT/OFFSET query, so a million rows never reach the widget."""
FILTERS = (("platform", "platform"), ("format", "format"), ("label", "label"),
           ("min_confidence", "min conf"), ("license", "licence"), ("search", "text"))
"""Form fields (key, label shown beside the field). ``search`` reads typed terms like the F4 filter box; the others
are one SnapshotFilter field each (``format`` is the source format)."""
HINTS = {"platform": "thingiverse", "format": "stl", "min_confidence": "0.5", "license": "CC-BY-4.0",
         "search": "words, tag:x"}
"""Examples inside the empty fields; the names beside them stay when a field is filled."""


class DatabaseScreen(ReviewKeys, EngineScreen):
    TITLE = "Database"
    CSS_PATH = "../styles/database.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "run_query", "Run query", tooltip="Query with the filters in the form"),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="[", show=False),
        Binding("e", "export", "Export", tooltip="Export the matching snapshots as a dataset"),
        Binding("s", "show_stats", "Statistics", tooltip="Bar charts by platform, format, label, stage"),
        Binding("slash", "focus_form", "Query form", key_display="/"),
        Binding("escape", "show_results", "Results", key_display="esc", show=False,
                tooltip="Leave the form for the results list"),
        Binding("1", "show_results", "Results tab", show=False),
        Binding("2", "show_stats", "Statistics tab", show=False),
        *REVIEW_BINDINGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = 0
        self.page_after: list[Any] = [None]  # the key each page starts after: pages are read by key, not OFFSET
        self.total = 0
        self.filters = SnapshotFilter()
        self.marked: set[str] = set()  # result rows marked for a review decision
        self.whole_query = False  # the next decision applies to every row of the query
        self.result_cells: dict[str, tuple[Text, ...]] = {}  # what the results table shows, by snapshot id
        self.stats: dict[str, Any] | None = None  # db.stats as last read (the statistics tab shows it)

    def compose(self) -> ComposeResult:
        yield Header()
        with Grid(id="db-form"):
            for key, label in FILTERS:
                with Horizontal(classes="field-row"):
                    yield Label(label, classes="field-label")
                    yield Input(placeholder=HINTS.get(key, ""), id=f"q-{key}", classes="db-filter", compact=True)
        yield Static("", id="db-status", markup=False)
        with TabbedContent(id="db-tabs"):
            with TabPane("1 Results", id="tab-results"):
                yield PageTable(id="db-results", cursor_type="row", zebra_stripes=True)
            with TabPane("2 Statistics", id="tab-stats"), Vertical():
                yield Static("", id="db-totals", markup=False)
                with Grid(id="db-charts"):
                    for key in ("platform", "format", "label", "stage"):
                        yield BarChart(f"by {key}", id=f"chart-{key}")
        yield mode_footer()

    def on_mount(self) -> None:
        # label and confidence first: they keep their width at 80 columns, the title is cropped instead
        self.query_one("#db-results", DataTable).add_columns(
            "label", "conf", "title", "platform", "format", "licence", "points", "size")
        for field in self.query(".db-filter").results(Input):
            field.cursor_blink = self.d3d_app.cursor_blink
        self.query_one("#db-results", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.filters, self.page, self.page_after = self.read_form(), 0, [None]
        self.fetch_page()
        # read on every visit, whichever tab is up (the running totals, no table scan): the statistics
        # tab shows them at its key and reads them again, instead of waiting for the read
        self.load_stats()

    # ------------------------------------------------------------ query and paging

    def read_form(self) -> SnapshotFilter:
        """The form as one SnapshotFilter; a field that cannot be read is left out, with a warning."""
        flt = SnapshotFilter()
        for key, label in FILTERS:
            value = self.query_one(f"#q-{key}", Input).value.strip()
            if not value:
                continue
            try:
                part = SnapshotFilter.parse(value) if key == "search" else SnapshotFilter.from_mapping({key: value})
            except FilterError as exc:
                self.notify(f"{label}: {exc}", title="Query", severity="warning", markup=False)
                continue
            flt = flt.merged(**{k: v for k, v in part.items()})
        return flt

    @on(Input.Submitted, ".db-filter")
    def action_run_query(self) -> None:
        self.filters, self.page, self.page_after = self.read_form(), 0, [None]
        self.fetch_page()
        self.query_one(TabbedContent).active = "tab-results"

    def fetch_page(self) -> None:
        if not self.bridge.has("db"):
            set_line(self.query_one("#db-status", Static), "The database is not available in this engine yet.")
            return
        flt, offset = self.filters, self.page * PAGE_SIZE
        set_line(self.query_one("#db-status", Static), "querying…")
        self.ask("Could not count the results", lambda d3d: d3d.db.count(flt), on_reply=self.show_count,
                 modal=True)
        after = self.page_after[self.page]
        if self.bridge.has("db.page"):
            self.ask("Query failed", lambda d3d: d3d.db.page(after, PAGE_SIZE, flt), on_reply=self.show_rows,
                     modal=True)
        else:
            self.ask("Query failed", lambda d3d: d3d.db.query(filter=flt, limit=PAGE_SIZE, offset=offset),
                     on_reply=self.show_rows, modal=True)

    def recount(self) -> None:
        """Live: the match count follows stored items; the rows shown stay until the next query."""
        if self.bridge.has("db"):
            flt = self.filters
            self.ask("Could not count the results", lambda d3d: d3d.db.count(flt), on_reply=self.show_count)
        self.load_stats()  # the charts follow the work too

    def show_count(self, total: int) -> None:
        self.total = total
        self._status()

    def show_rows(self, rows: list[Any]) -> None:
        fill_table(self.query_one("#db-results", DataTable), self.result_cells, [(r.snapshot_id, _result_cells(r))
                                                                                  for r in rows])
        self.rows_shown = len(rows)
        del self.page_after[self.page + 1:]
        if rows:
            self.page_after.append(row_key(rows[-1]))
            self.review_states_for([r.snapshot_id for r in rows])
        self._status()
        self.settled("rows", self.page)

    def _status(self) -> None:
        pages = max((self.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        first = self.page * PAGE_SIZE
        shown = getattr(self, "rows_shown", 0)
        where = self.filters.describe()
        set_line(self.query_one("#db-status", Static),
            f"{self.total:,} match ({where}) · {first + 1 if shown else 0}–{first + shown} · "
            f"page {self.page + 1}/{pages} · [ ] page")

    def action_page(self, delta: int) -> None:
        pages = max((self.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        new = min(max(self.page + delta, 0), pages - 1, len(self.page_after) - 1)
        if new != self.page:  # one page at a time: the next page's key comes with this page's rows
            self.page = new
            self.fetch_page()

    def action_focus_form(self) -> None:
        self.query_one("#q-platform", Input).focus()

    @on(DataTable.RowSelected, "#db-results")
    async def _open(self, event: DataTable.RowSelected) -> None:
        """enter on a result opens it in the Snapshots screen."""
        snapshot_id = event.row_key.value
        if snapshot_id:
            await self.app.switch_mode("snapshots")
            opener = getattr(self.app.screen, "open_snapshot", None)
            if opener is not None:
                opener(snapshot_id)

    # ------------------------------------------------------------ review (keys in .review)

    def review_table(self) -> DataTable:
        return self.query_one("#db-results", DataTable)

    def review_filter(self) -> SnapshotFilter:
        return self.filters

    def review_total(self) -> int:
        return self.total

    def review_reload(self) -> None:
        self.fetch_page()

    # ------------------------------------------------------------ statistics

    def action_show_results(self) -> None:
        self.query_one(TabbedContent).active = "tab-results"
        self.query_one("#db-results", DataTable).focus()

    def action_show_stats(self) -> None:
        tabs = self.query_one(TabbedContent)
        # the figures read last (on this visit, or by the live recount at most LIVE_COUNT_S after the
        # last stored item) go up with the tab; the read asked here replaces them if anything moved
        if self.stats is not None:
            self.show_stats(self.stats)
        self.load_stats()  # (already shown: s reads them again)
        if tabs.active != "tab-stats":
            self._stats_asked = True
            tabs.active = "tab-stats"

    @on(TabbedContent.TabActivated, "#db-tabs")
    def _tab_shown(self) -> None:
        """The charts are read again when their tab is shown by mouse (the key asked already)."""
        if self.query_one(TabbedContent).active == "tab-stats":
            if getattr(self, "_stats_asked", False):
                self._stats_asked = False  # the key asked already and put the last figures in
                if self.stats is not None:
                    self.settled("stats")  # the tab is up with them
                return
            self.load_stats()

    def load_stats(self) -> None:
        if self.bridge.has("db.stats"):
            self.ask("Could not read the statistics", lambda d3d: d3d.db.stats(), on_reply=self.show_stats)

    def show_stats(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        for key in ("platform", "format", "label", "stage"):
            self.query_one(f"#chart-{key}", BarChart).set_data((stats.get(f"by_{key}") or {}).items())
        totals = stats.get("totals")
        total = totals.get("snapshots", totals) if isinstance(totals, dict) else totals
        coverage = stats.get("classification_coverage")
        ratio = stats.get("compression_ratio")
        set_line(self.query_one("#db-totals", Static),
            f"{total} snapshots · storage {human_bytes(stats.get('storage_bytes'))} · "
            f"classified {coverage:.0%}" if isinstance(coverage, float) else f"{total} snapshots · "
            f"storage {human_bytes(stats.get('storage_bytes'))}"
            + (f" · compression {ratio:.1f}×" if ratio else ""))
        if self.query_one(TabbedContent).active == "tab-stats":  # (read in the background: nothing shown yet)
            self.settled("stats")

    # ------------------------------------------------------------ export

    def action_export(self) -> None:
        if not self.bridge.has("db.export"):
            self.notify("Export is not available in this engine yet.", title="Export", severity="warning")
            return
        from .export_dialog import export_dialog

        self.app.push_screen(export_dialog(self.app, self.filters))


def _result_cells(r: Any) -> tuple[Text, ...]:
    conf = f"{r.confidence:.0%}" if r.confidence is not None else "–"
    label = label_with_guess(r.label, r.best_guess) or "–"  # "unknown · car?": the model's guess beside unknown
    return (plain(label), plain(conf), plain(r.title or r.model_id), plain(r.platform), plain(r.original_format),
            plain(r.license_spdx or r.license or "?"), plain(r.point_count), plain(human_bytes(r.snapshot_bytes)))
