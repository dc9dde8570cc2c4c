"""The queue board's actions, driven by keys against a real queue: priority, cancel, details,
retry failed, pause/resume, paging of a large queue, and quitting with a drain."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import DataTable, TabbedContent

from destill3d_tui.app import Destill3DApp
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.screens.queue import PAGE_SIZE
from destill3d_tui.screens.queue_detail import QueueItemModal
from destill3d_tui.widgets.stage_board import StageBoard

from .conftest import frozen_clock
from .test_app_pilot import SIZE, settle, wait_for


def bulk_queue(engine: Destill3D, total: int) -> None:
    """``total`` queued rows generated inside SQLite (the columns ``Queue.add_entries`` writes)."""
    table = engine.store.ProcessingQueue._meta.table_name
    engine.store.execute(
        f"INSERT INTO {table} (model_id, platform, source_url, source_id, stage, priority, retry_count, "
        "max_retries, metadata, bytes_in, created_at, updated_at) "
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) "
        "SELECT 'test:' || i, 'test', 'http://127.0.0.1/' || i, CAST(i AS TEXT), 'queued', 0, 0, 3, '{}', 0, "
        "datetime('now'), datetime('now') FROM seq",
        (total - 1,),
    )


def board_app(engine: Destill3D, start: bool = False) -> Destill3DApp:
    return Destill3DApp(engine, start_pipeline=start, clock=frozen_clock, cursor_blink=False, initial_mode="queue")


async def test_priority_cancel_and_details(engine: Destill3D, model_folder: Path) -> None:
    first, second = engine.queue.add_paths([model_folder], recursive=True)
    app = board_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#queue-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        table.focus()
        table.move_cursor(row=table.get_row_index(str(second)))
        await pilot.press("plus")
        await wait_for(pilot, lambda: engine.queue.get(second).priority == 1)
        await pilot.press("minus", "minus")
        await wait_for(pilot, lambda: engine.queue.get(second).priority == -1)
        table.move_cursor(row=table.get_row_index(str(first)))
        await pilot.press("x")
        await wait_for(pilot, lambda: engine.queue.get(first).reason == "cancelled")
        board = app.screen.query_one(StageBoard)
        await wait_for(pilot, lambda: board.counts.get("failed") == 1 and board.counts.get("queued") == 1)
        app.screen.query_one(TabbedContent).active = "tab-failures"
        failures = app.screen.query_one("#failures-table", DataTable)
        await wait_for(pilot, lambda: failures.row_count == 1)
        assert failures.get_row_at(0)[2].plain == "cancelled"
        failures.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, QueueItemModal) and bool(app.screen.query("#item-text")))
        shown = str(app.screen.query_one("#item-text").render())
        assert "cancelled by the user" in shown and "attempts" in shown
        await pilot.press("escape")
        await settle(app)


async def test_failures_retry_pause_resume_and_quit_drains(engine: Destill3D, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "broken.stl").write_bytes(b"solid nothing\nthis is not an stl\n")
    engine.settings.pipeline.max_retries = 0
    engine.queue.add_paths([junk], recursive=True)
    app = board_app(engine, start=True)
    async with app.run_test(size=SIZE) as pilot:
        board = app.screen.query_one(StageBoard)
        await wait_for(pilot, lambda: board.counts.get("failed") == 1, timeout=90)
        assert app.live.failures and app.live.failures[0].reason
        app.screen.query_one("#queue-table", DataTable).focus()
        await pilot.press("R")
        await wait_for(pilot, lambda: any("queued again" in str(n.message) for n in app._notifications))
        await pilot.press("p")
        await wait_for(pilot, lambda: engine.pipeline.state == "paused")
        await pilot.press("p")
        await wait_for(pilot, lambda: engine.pipeline.state != "paused")
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code == 0 or not app.is_running, timeout=60)
    assert engine.pipeline.state == "stopped"


async def test_a_large_queue_is_paged_not_loaded(engine: Destill3D) -> None:
    total = 100_000
    bulk_queue(engine, total)
    app = board_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#queue-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == PAGE_SIZE and app.screen.total_in_view == total)
        table.focus()
        started = time.monotonic()
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: app.screen.page == 1 and str(table.get_row_at(0)[0]) != "1")
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: app.screen.page == 2)
        elapsed = time.monotonic() - started
        assert table.row_count == PAGE_SIZE
        assert elapsed < 10, f"paging a {total}-item queue took {elapsed:.1f}s"
        await settle(app)
