"""F2 Search: pick a platform (or a local folder), search, inspect, select with space, queue with a."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Header, Input, Label, Select, Static

from ..bridge import describe_error
from ..engine.api import SearchFilters
from ..engine.text import display
from ..widgets.text import age, human_bytes, plain
from .base import EngineScreen, mode_footer

LICENSE_POLICIES = ("research", "commercial", "any")
SORTS = ("relevant", "newest", "popular")
MARK = "✓"
HOW_TO = (
    "Pick a platform (tab to the selector), type a query and press enter.\n\n"
    "For files on this machine choose 'local' and press o to pick files or folders.\n\n"
    "space selects a result, a queues the selection, F3 shows the queue working on it."
)


class SearchScreen(EngineScreen):
    TITLE = "Search"
    CSS_PATH = "../styles/search.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_select", "Select", tooltip="Select or unselect the highlighted result"),
        Binding("a", "queue_selected", "Queue selected", tooltip="Add the selected results to the queue"),
        Binding("o", "pick_folder", "Local folder", tooltip="Pick local files or folders to queue"),
        Binding("slash", "focus_query", "Query", key_display="/"),
        Binding("escape", "focus_results", "Results", show=False,
                tooltip="Leave the form for the results; cancels a running search"),
        Binding("ctrl+o", "pick_folder", "Local folder", show=False, tooltip="Pick local files (works while typing)"),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="[", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, Any] = {}  # row key -> ModelMetadata or Path
        self.selected: dict[str, Any] = {}  # row key -> result; kept across pages
        self.pages: list[Any] = [1]  # page tokens so far (numbers or cursors); the last is shown
        self.next_page: Any = None
        self.platform_info: dict[str, Any] = {}
        self.searching = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="search-form"):
            yield Select([("local", "local")], value="local", allow_blank=False, id="platform", compact=True)
            yield Label("query", classes="field-label")
            yield Input(placeholder="words or a folder (enter searches)", id="query", compact=True)
        with Horizontal(id="search-filters"):
            yield Select([(f"licence: {p}", p) for p in LICENSE_POLICIES], value="research", allow_blank=False,
                         id="policy", compact=True)
            yield Label("formats", classes="field-label")
            yield Input(placeholder="stl,step", id="formats", compact=True)
            yield Select([(f"sort: {s}", s) for s in SORTS], value="relevant", allow_blank=False, id="sort",
                         compact=True)
        yield Static("", id="rate-status")
        with Horizontal(id="search-main"):
            yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
            yield VerticalScroll(Static(HOW_TO, id="detail"), id="detail-box")
        yield mode_footer()

    def on_mount(self) -> None:
        self.query_one("#results", DataTable).add_columns(" ", "title", "author", "licence")
        for field in self.query(Input).results(Input):
            field.cursor_blink = self.d3d_app.cursor_blink
        if self.bridge.has("acquire"):
            self.ask("Could not list the platforms", lambda d3d: d3d.acquire.platforms(),
                     on_reply=self.show_platforms)
        self._show_status()
        self.query_one("#results", DataTable).focus()

    # ------------------------------------------------------------ platforms and rate budget

    def show_platforms(self, platforms: list[Any]) -> None:
        self.platform_info = {p.platform_id: p for p in platforms}
        options = [(p.platform_id if p.available else f"{p.platform_id} (unavailable)", p.platform_id)
                   for p in platforms if p.platform_id != "local"]
        options.insert(0, ("local", "local"))  # always offered, first
        select = self.query_one("#platform", Select)
        select.set_options(options)
        select.value = "local"
        self._refresh_rates()

    def _refresh_rates(self) -> None:
        if self.bridge.has("acquire"):
            self.ask("Could not read the rate budgets", lambda d3d: d3d.acquire.rate_status(),
                     on_reply=self.show_rates)

    def show_rates(self, rates: dict[str, Any]) -> None:
        self.rates = rates
        self._show_status()

    @property
    def platform(self) -> str:
        return str(self.query_one("#platform", Select).value)

    def _show_status(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        platform = self.platform
        info = self.platform_info.get(platform)
        if platform == "local":
            text.append("local files: o picks files or folders · a queues them", style="bold")
        elif not self.bridge.has("acquire"):
            text.append("Platform search is not available in this engine yet; o picks local files.", style="italic")
        elif info is not None and not info.available:
            text.append(f"{platform} unavailable: {info.why}", style="bold yellow")
        rate = getattr(self, "rates", {}).get(platform)
        if rate is not None and platform != "local":
            now = self.d3d_app.clock()
            text.append(f"{platform} budget {rate.tokens:.0f}/{rate.capacity:.0f}")
            if rate.banned:
                text.append(" · BANNED", style="bold red")
            elif rate.paused_until and rate.paused_until > now:
                text.append(f" · paused {age(rate.paused_until - now)}", style="bold yellow")
            if rate.message:
                text.append(f" · {rate.message}", style="dim")
        text.append(f" · {len(self.selected)} selected")
        self.query_one("#rate-status", Static).update(text)

    @on(Select.Changed, "#platform")
    def _platform_changed(self) -> None:
        self._show_status()

    # ------------------------------------------------------------ searching

    @on(Input.Submitted, "#query")
    @on(Input.Submitted, "#formats")
    def _submitted(self) -> None:
        self.pages = [1]
        self.run_search()

    def run_search(self) -> None:
        platform, query = self.platform, self.query_one("#query", Input).value.strip()
        if platform == "local":
            self.action_pick_folder()
            return
        if not self.bridge.has("acquire"):
            self.notify("Platform search is not available in this engine yet.", title="Search")
            return
        info = self.platform_info.get(platform)
        if info is not None and not info.available:
            self.notify(f"{platform} cannot search: {info.why}", title="Search", severity="warning", markup=False)
            return
        formats = [f.strip().lower() for f in self.query_one("#formats", Input).value.split(",") if f.strip()]
        filters = SearchFilters(license_policy=str(self.query_one("#policy", Select).value), formats=formats,
                                sort=str(self.query_one("#sort", Select).value))
        page = self.pages[-1]
        self.searching = True
        self.query_one("#rate-status", Static).update(f"searching {platform} for {query!r}… (escape cancels)")
        self.ask(f"Search on {platform} failed", lambda d3d: d3d.acquire.search(platform, query, filters, page=page),
                 on_reply=self.show_results, on_error=self.search_failed)

    def search_failed(self, error: Exception) -> None:
        """The error modal names the engine's reason; the status line returns to the budget."""
        self.searching = False
        self._show_status()
        self.d3d_app.show_error(f"Search on {self.platform} failed", describe_error(error))

    def show_results(self, page: Any) -> None:
        self.searching = False
        self.next_page = page.next_page
        rows = [(f"{m.platform}:{m.source_id}", m) for m in page.results]
        self._fill(rows)
        self._refresh_rates()

    def _fill(self, rows: list[tuple[str, Any]]) -> None:
        table = self.query_one("#results", DataTable)
        table.clear()
        self.results = dict(rows)
        for key, item in rows:
            if isinstance(item, Path):
                cells = (item.name, "(you)", "your own files")
            else:
                cells = (item.title or item.source_id, item.author, item.license.spdx or item.license.raw or "unknown")
            table.add_row(plain(MARK if key in self.selected else ""), *(plain(c) for c in cells), key=key)
        self._show_status()
        if rows:
            table.focus()
            self._show_detail(rows[0][0])

    @on(DataTable.RowHighlighted, "#results")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._show_detail(event.row_key.value)

    def _show_detail(self, key: str) -> None:
        item = self.results.get(key)
        self.query_one("#detail", Static).update(detail_text(item) if item is not None else "")

    # ------------------------------------------------------------ selection and queueing

    def action_toggle_select(self) -> None:
        table = self.query_one("#results", DataTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        name = str(key.value)
        if self.selected.pop(name, None) is None:
            self.selected[name] = self.results[name]
        table.update_cell(key, table.ordered_columns[0].key, plain(MARK if name in self.selected else ""))
        self._show_status()
        table.move_cursor(row=min(table.cursor_row + 1, table.row_count - 1))

    def action_queue_selected(self) -> None:
        chosen = list(self.selected.values())
        if not chosen:
            self.notify("Select results with space first.", title="Queue")
            return
        paths = [c for c in chosen if isinstance(c, Path)]
        remote = [c for c in chosen if not isinstance(c, Path)]

        def enqueue(d3d: Any) -> int:
            ids = d3d.queue.add_paths([str(p) for p in paths], recursive=True) if paths else []
            if remote:
                ids += d3d.acquire.queue_results(remote)
            return len(ids)

        self.ask("Could not queue the selection", enqueue, on_reply=self.show_queued, modal=True)

    def show_queued(self, count: int) -> None:
        self.notify(f"{count} item(s) queued · F3 shows them on the queue board", title="Queued")
        self.selected.clear()
        table = self.query_one("#results", DataTable)
        for key in list(table.rows):
            table.update_cell(key, table.ordered_columns[0].key, plain(""))
        self._show_status()

    def action_pick_folder(self) -> None:
        from .folder_picker import LAST_FOLDER, FolderPicker, start_folder

        def picked(paths: list[Path] | None) -> None:
            if paths:
                self.selected = {str(p): p for p in paths}
                self._fill([(str(p), p) for p in paths])

        typed = self.query_one("#query", Input).value
        self.app.push_screen(FolderPicker(start_folder(typed, self.bridge.recall(LAST_FOLDER))), picked)

    def action_focus_results(self) -> None:
        if self.searching:
            self.cancel_search()
        self.query_one("#results", DataTable).focus()

    def cancel_search(self) -> None:
        """Drop the running search's answer; the request itself ends with the HTTP client's timeout."""
        self.bridge.cancel(self.request_group(self.show_results))
        self.searching = False
        self._show_status()
        self.query_one("#rate-status", Static).update("search cancelled")

    def action_focus_query(self) -> None:
        self.query_one("#query", Input).focus()

    def action_page(self, delta: int) -> None:
        if self.platform == "local":
            return
        if delta > 0:
            if self.next_page is None:
                self.notify("This is the last page.", title="Search")
                return
            self.pages.append(self.next_page)
        elif len(self.pages) > 1:
            self.pages.pop()
        else:
            return
        self.run_search()

def detail_text(item: Any) -> Text:
    text = Text()
    if isinstance(item, Path):
        text.append(f"{display(item)}\n", style="bold")
        text.append("queued as a local file; folders are walked recursively and the files are never moved")
        return text
    lic = item.license
    text.append(f"{display(item.title or item.source_id)}\n", style="bold")
    for name, value in (("author", item.author), ("licence", lic.raw or "–"),
                        ("SPDX", lic.spdx or "unknown (never assumed free)"), ("source", item.source_url),
                        ("tags", ", ".join(item.tags))):
        text.append(f"{name:>8}  ", style="bold")
        text.append(f"{display(value) or '–'}\n")  # platform text: escaped
    if item.files:
        text.append("files\n", style="bold")
        for f in item.files[:20]:
            text.append(f"  {display(f.name)}  {human_bytes(f.size) if f.size else ''}\n")
    return text
