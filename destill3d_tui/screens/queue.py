"""F3 Queue board: stage counts, active items, throughput, compression, rates, failures, actions.

Tables are paged by key (``PAGE_SIZE`` rows after the last one shown, never OFFSET) and live rows
are updated by key, cell by cell, only where they changed, so a queue of 100,000 items costs one
page of widgets, not 100,000. One request reads the whole board (running totals, the page, the
failures, the rate budgets) and one reply redraws it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Header, Sparkline, Static, TabbedContent, TabPane
from textual.widgets.data_table import RowDoesNotExist

from ..widgets.rate_panel import RatePanel
from ..widgets.stage_board import STAGE_ORDER, StageBoard
from ..widgets.table import PageTable
from ..widgets.text import age, human_bytes, plain, set_line
from .base import EngineScreen, fill_table, mode_footer

if TYPE_CHECKING:
    from ..engine.events import Event
    from ..live import LiveState

PAGE_SIZE = 30
"""Rows per page of the queue table: two screenfuls at 100x30; every row costs the re-read each second (60 before)."""
REFRESH_S = 1.0
"""Counts and the visible page are re-read at most once a second while events arrive."""
STAGE_FILTERS = (None, *STAGE_ORDER)
TABS = {"tab-queue": "Queue", "tab-active": "Active", "tab-failures": "Failures", "tab-rates": "Rates"}
"""Tab ids and their names; keys 1-4 open them."""


@dataclass(frozen=True)
class Board:
    """One read of everything the board shows."""

    totals: dict[str, Any]  # the store's running totals: counts by stage, bytes (no table scan)
    page: list[Any]
    failures: list[Any]
    rates: dict[str, Any] | None


def read_board(d3d: Any, after: tuple[int, int] | None, stage: str | None, rates: bool) -> Board:
    """Runs in a worker: a few dozen totals rows and two index range reads."""
    return Board(d3d.db.totals(), d3d.queue.page(after, PAGE_SIZE, stage), d3d.queue.page(None, PAGE_SIZE, "failed"),
                 d3d.acquire.rate_status() if rates else None)


class QueueScreen(EngineScreen):
    TITLE = "Queue board"
    CSS_PATH = "../styles/queue.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "toggle_pause", "Pause/resume", tooltip="Pause or resume the pipeline"),
        Binding("R", "retry_failed", "Retry failed", tooltip="Queue every failed item again"),
        Binding("x", "cancel", "Cancel item", tooltip="Cancel the selected queue item"),
        Binding("plus,equals_sign", "priority(1)", "Priority +", show=False,
                tooltip="Raise the selected item's priority"),
        Binding("minus", "priority(-1)", "Priority -", show=False, tooltip="Lower the selected item's priority"),
        Binding("t", "cycle_stage", "Stage filter", tooltip="Show one stage of the queue at a time"),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="[", show=False),
        Binding("enter", "details", "Details", show=False, tooltip="Why an item failed, attempts, next retry"),
        *[Binding(str(n), f"show_tab('{tab}')", f"{label} tab", show=False)
          for n, (tab, label) in enumerate(TABS.items(), start=1)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.page = 0
        self.page_after: list[tuple[int, int] | None] = [None]  # (priority, queue_id) each page starts after
        self.stage_filter: str | None = None
        self.total_in_view = 0
        self._last_refresh = 0.0
        self._refresh_pending = False
        self._cells: dict[str, dict[str, tuple[Text, ...]]] = {}
        self._throughput_label = ""  # table id -> row key -> cells shown
        self._priority_lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Header()
        yield StageBoard(id="stage-board")
        with Horizontal(id="queue-stats"):
            with Vertical(id="throughput-box"):
                yield Sparkline([0.0], id="throughput")
                yield Static("", id="throughput-label")
            yield Static("", id="bytes-label")
        with TabbedContent(id="queue-tabs", initial="tab-queue"):
            with TabPane("1 Queue", id="tab-queue"):
                yield Static("", id="queue-page", markup=False)
                yield PageTable(id="queue-table", cursor_type="row", zebra_stripes=True)
            with TabPane("2 Active", id="tab-active"):
                yield PageTable(id="active-table", cursor_type="row")
            with TabPane("3 Failures", id="tab-failures"):
                yield PageTable(id="failures-table", cursor_type="row", zebra_stripes=True)
            with TabPane("4 Rates", id="tab-rates"):
                yield RatePanel(id="rates", clock=self.d3d_app.clock)
        yield mode_footer()

    def on_mount(self) -> None:
        # status columns first: at 80 columns the title is what gets cropped, never the stage or reason
        columns = ("id", "stage", "try", "reason", "pri", "platform", "title")
        self.query_one("#queue-table", DataTable).add_columns(*columns)
        self.query_one("#active-table", DataTable).add_columns("id", "model", "stage", "progress", "for")
        self.query_one("#failures-table", DataTable).add_columns("id", "stage", "reason", "try", "message")
        self.query_one("#queue-table", DataTable).focus()
        self.set_interval(2.0, self._tick)

    def _tick(self) -> None:
        """The periodic re-read, only while the board is shown: a hidden board costs the database nothing."""
        if self.is_current:
            self.refresh_from_engine()

    def on_screen_resume(self) -> None:
        self.refresh_from_engine()
        self.apply_live(self.d3d_app.live, ())

    # ------------------------------------------------------------ reading the engine

    def refresh_from_engine(self) -> None:
        self._last_refresh = time.monotonic()
        self._refresh_pending = False
        if not self.bridge.has("queue"):
            set_line(self.query_one("#queue-page", Static), "The queue is not available in this engine yet.")
            return
        self.ask("Could not read the queue", read_board, self.page_after[self.page], self.stage_filter,
                 self.bridge.has("acquire"), on_reply=self.show_board)

    def show_board(self, board: Board) -> None:
        with self.app.batch_update():  # one repaint for the whole board
            by_stage = dict.fromkeys(STAGE_ORDER, 0)
            by_stage.update(board.totals.get("by_stage") or {})
            self.show_counts(by_stage)
            self.show_page(board.page)
            self.show_failures(board.failures)
            self.show_stats(board.totals)
            if board.rates is not None:
                self.show_rates(board.rates)
        self.settled("page", self.page)

    def show_counts(self, counts: dict[str, int]) -> None:
        self.query_one(StageBoard).set_counts(counts)
        self.total_in_view = sum(counts.values()) if self.stage_filter is None else counts.get(self.stage_filter, 0)
        self._show_page_label()

    def _show_page_label(self) -> None:
        pages = max((self.total_in_view + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        first = self.page * PAGE_SIZE + 1 if self.total_in_view else 0
        last = min((self.page + 1) * PAGE_SIZE, self.total_in_view)
        stage = self.stage_filter or "all stages"
        if self.total_in_view == 0 and self.stage_filter is None:
            set_line(self.query_one("#queue-page", Static),
                     "The queue is empty: F2 Search finds models or local files.")
            return
        label = f"{stage} · rows {first:,}–{last:,} of {self.total_in_view:,} · page {self.page + 1}/{pages}"
        set_line(self.query_one("#queue-page", Static), label + " · t filter · [ ] page · enter details")

    def show_page(self, rows: list[Any]) -> None:
        del self.page_after[self.page + 1:]
        if len(rows) == PAGE_SIZE:  # a full page: the next one starts after its last row
            self.page_after.append((rows[-1].priority, rows[-1].queue_id))
        self._fill("#queue-table", [(str(r.queue_id), _queue_cells(r)) for r in rows])

    def show_failures(self, rows: list[Any]) -> None:
        self._fill("#failures-table", [(str(r.queue_id), _failure_cells(r)) for r in rows])

    def _fill(self, selector: str, rows: list[tuple[str, tuple[Text, ...]]]) -> None:
        """Show ``rows``; when the table is rebuilt the cursor follows its item (priority changes the order)."""
        table = self.query_one(selector, DataTable)
        cursor, selected = table.cursor_row, _cursor_key(table)
        if fill_table(table, self._cells.setdefault(selector, {}), rows):
            keys = [key for key, _ in rows]
            if selected in keys:
                table.move_cursor(row=keys.index(selected))
            elif rows:
                table.move_cursor(row=min(cursor, len(rows) - 1))

    def show_stats(self, stats: dict[str, Any]) -> None:
        """The byte totals (running totals: no scan) and the session's counts from events."""
        downloaded, kept = stats.get("bytes_downloaded") or 0, stats.get("bytes_kept") or 0
        source = stats.get("source_bytes") or downloaded
        ratio = stats.get("compression_ratio") or (source / kept if kept else 0.0)
        live = self.d3d_app.live
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{human_bytes(source)} source → {human_bytes(kept)} kept")
        text.append(f" ({ratio:.1f}×)" if ratio else "", style="bold")
        if downloaded:
            text.append(f" · {human_bytes(downloaded)} downloaded", style="dim")
        text.append(f"\nsession: {live.session_stored} stored · {live.session_failed} failed · "
                    f"{live.session_duplicates} dup")
        set_line(self.query_one("#bytes-label", Static), text)

    def show_rates(self, rates: dict[str, Any]) -> None:
        self.query_one(RatePanel).set_budgets(rates)

    # ------------------------------------------------------------ live events

    def apply_live(self, live: LiveState, events: Iterable[Event]) -> None:
        events = list(events)
        rates = self.query_one(RatePanel)
        if live.rates:
            rates.set_budgets(live.rates)
        elif not self.bridge.has("acquire"):
            rates.set_budgets({}, "Rate budgets appear here once platform acquisition is available.")
        self._update_active(live)
        minutes = live.throughput()
        sparkline = self.query_one("#throughput", Sparkline)
        if list(sparkline.data or []) != minutes:  # 10 redraws a second: repaint what changed only
            sparkline.data = minutes
        label = f"{minutes[-1]:.0f}/min · {sum(minutes):.0f} in {len(minutes)} min · {live.pipeline_state}"
        if label != self._throughput_label:
            self._throughput_label = label
            set_line(self.query_one("#throughput-label", Static), label)
        if events:
            self._refresh_soon()

    def _refresh_soon(self) -> None:
        if self._refresh_pending:
            return
        wait = REFRESH_S - (time.monotonic() - self._last_refresh)
        if wait <= 0:
            self.refresh_from_engine()
        else:
            self._refresh_pending = True
            self.set_timer(wait, self.refresh_from_engine)

    def _update_active(self, live: LiveState) -> None:
        table = self.query_one("#active-table", DataTable)
        now = live.clock()
        for queue_id in live.take_changed():
            key = str(queue_id)
            item = live.active.get(queue_id)
            if item is None:
                with contextlib.suppress(RowDoesNotExist):
                    table.remove_row(key)
                continue
            progress = "" if item.progress is None else f"{item.progress * 100:.0f}%"
            cells = (plain(queue_id), plain(item.model_id), plain(item.stage), plain(progress),
                     plain(age(now - item.started_at)))
            if key in table.rows:
                for column, value in zip(table.columns, cells, strict=True):
                    table.update_cell(key, column, value)
            else:
                table.add_row(*cells, key=key)

    # ------------------------------------------------------------ actions

    def _selected_id(self) -> int | None:
        tabs = self.query_one(TabbedContent)
        table_id = {"tab-failures": "#failures-table", "tab-active": "#active-table"}.get(tabs.active, "#queue-table")
        table = self.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return int(key.value) if key.value is not None else None

    def action_toggle_pause(self) -> None:
        if not self.bridge.has("pipeline"):
            self.notify("The pipeline is not available in this engine yet.", title="Pause")
            return

        def toggle(d3d: Any) -> str:
            if d3d.pipeline.state == "paused":
                d3d.pipeline.resume()
            elif d3d.pipeline.state == "stopped":
                d3d.pipeline.start()
            else:
                d3d.pipeline.pause()
            return d3d.pipeline.state

        self.ask("Could not pause or resume the pipeline", toggle, on_reply=self.show_paused)

    def show_paused(self, state: str) -> None:
        self.d3d_app.live.pipeline_state = state
        self.notify(f"Pipeline {state}", title="Pipeline")
        self.apply_live(self.d3d_app.live, ())

    def action_retry_failed(self) -> None:
        self.ask("Could not retry the failed items", lambda d3d: d3d.queue.retry(failed=True),
                 on_reply=self.show_retried)

    def show_retried(self, count: int) -> None:
        self.notify(f"{count} failed item(s) queued again", title="Retry")
        self.refresh_from_engine()

    def action_cancel(self) -> None:
        queue_id = self._selected_id()
        if queue_id is not None:
            self.ask("Could not cancel the item", lambda d3d: d3d.queue.cancel([queue_id]),
                     on_reply=self.show_cancelled)

    def show_cancelled(self, count: int) -> None:
        self.notify(f"{count} item(s) cancelled", title="Cancel")
        self.refresh_from_engine()

    def action_priority(self, delta: int) -> None:
        queue_id = self._selected_id()
        if queue_id is None:
            return

        lock = self._priority_lock

        def bump(d3d: Any) -> int:
            with lock:  # quick repeated presses each count: read-modify-write one at a time
                priority = d3d.queue.get(queue_id).priority + delta
                d3d.queue.set_priority(queue_id, priority)
                return priority

        self.ask("Could not change the priority", bump, on_reply=self.show_priority, exclusive=False)

    def show_priority(self, priority: int) -> None:
        self.notify(f"priority now {priority}", title="Priority")
        self.refresh_from_engine()

    def action_cycle_stage(self) -> None:
        index = STAGE_FILTERS.index(self.stage_filter)
        self.stage_filter = STAGE_FILTERS[(index + 1) % len(STAGE_FILTERS)]
        self.page, self.page_after = 0, [None]
        self.query_one(TabbedContent).active = "tab-queue"
        self.refresh_from_engine()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        table = {"tab-queue": "#queue-table", "tab-active": "#active-table", "tab-failures": "#failures-table"}
        if tab in table:
            self.query_one(table[tab], DataTable).focus()

    def action_page(self, delta: int) -> None:
        pages = max((self.total_in_view + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        # one page at a time: the next page's key comes with this page's rows
        new = min(max(self.page + delta, 0), pages - 1, len(self.page_after) - 1)
        if new != self.page:
            self.page = new
            self.refresh_from_engine()

    def action_details(self) -> None:
        queue_id = self._selected_id()
        if queue_id is not None:
            self.ask("Could not read the item", lambda d3d: d3d.queue.get(queue_id), on_reply=self.show_details)

    def show_details(self, row: Any) -> None:
        from .queue_detail import QueueItemModal

        self.app.push_screen(QueueItemModal(row, now=self.d3d_app.clock()))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id in ("queue-table", "failures-table"):
            self.action_details()


def _cursor_key(table: DataTable) -> str | None:
    if table.row_count == 0:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _failure_cells(row: Any) -> tuple[Text, ...]:
    return (plain(row.queue_id), plain(row.stage), plain(row.reason or "?", "bold red"),
            plain(f"{row.retry_count}/{row.max_retries}"), plain(_first_line(row.last_error)))


def _queue_cells(row: Any) -> tuple[Text, ...]:
    stage_style = "bold red" if row.stage == "failed" else ("green" if row.stage == "stored" else "")
    return (plain(row.queue_id), plain(row.stage, stage_style), plain(f"{row.retry_count}/{row.max_retries}"),
            plain(row.reason or ""), plain(row.priority), plain(row.platform),
            plain(row.title or row.model_id or row.source_url))
