"""What keeps keys fast at 100,000 rows (issue 15): keyset pages of the queue, a re-read that
finds the same rows costs no redraw, the footer is rebuilt only when its keys change, and each
screen stamps what it has shown (bench/tui.py times keys by those stamps)."""

from __future__ import annotations

from textual.widgets import DataTable

from destill3d_tui.engine.api import Destill3D
from destill3d_tui.screens.queue import PAGE_SIZE, QueueScreen
from destill3d_tui.widgets.footer import ModeFooter

from .test_app_pilot import SIZE, make_app, wait_for
from .test_queue_board import board_app, bulk_queue


def test_queue_keyset_pages_walk_the_list_order(engine: Destill3D) -> None:
    bulk_queue(engine, 45)
    queue = engine.queue
    for queue_id, priority in ((3, 5), (10, 5), (20, -1), (30, 2)):  # ties on priority: queue_id breaks them
        queue.set_priority(queue_id, priority)
    expected = [r.queue_id for r in queue.list(limit=1000)]
    walked, after = [], None
    while True:
        rows = queue.page(after, 7)
        walked += [r.queue_id for r in rows]
        if len(rows) < 7:
            break
        after = (rows[-1].priority, rows[-1].queue_id)
    assert walked == expected and len(walked) == 45
    queue.cancel([5])  # a stage narrows the same order
    assert [r.queue_id for r in queue.page(None, 100, "queued")] == [i for i in expected if i != 5]


async def test_the_queue_board_pages_by_key_and_back(engine: Destill3D) -> None:
    bulk_queue(engine, 2 * PAGE_SIZE + 10)
    app = board_app(engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        table = screen.query_one("#queue-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == PAGE_SIZE and screen.total_in_view == 2 * PAGE_SIZE + 10)
        table.focus()
        first = str(table.get_row_at(0)[0])
        for page, first_id in ((1, PAGE_SIZE + 1), (2, 2 * PAGE_SIZE + 1)):
            await pilot.press("right_square_bracket")
            await wait_for(pilot, lambda page=page, first_id=first_id: screen.stamps.get("page", (0, None))[1] == page
                           and table.row_count > 0 and str(table.get_row_at(0)[0]) == str(first_id))
        assert table.row_count == 10 and screen.page_after[-1] is not None
        await pilot.press("right_square_bracket")  # no page after the last one
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: screen.page == 0 and str(table.get_row_at(0)[0]) == first)


async def test_a_reread_of_the_same_rows_does_not_rebuild_the_table(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="database")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        table = screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4 and "rows" in screen.stamps)
        keys = list(table.rows)
        rebuilt = []
        original_clear = table.clear
        table.clear = lambda *a, **k: rebuilt.append(1) or original_clear(*a, **k)  # type: ignore[method-assign]
        stamped = screen.stamps["rows"][0]
        screen.fetch_page()  # what a mode switch or a live refresh does
        await wait_for(pilot, lambda: screen.stamps["rows"][0] > stamped)
        assert rebuilt == [] and list(table.rows) == keys


async def test_the_footer_is_rebuilt_only_when_its_keys_change(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for key in ("f5", "f4", "f5", "f4"):  # compose each footer once
            await pilot.press(key)
        await pilot.pause()
        footer = app.screen.query_one(ModeFooter)
        composed = []
        original = footer.recompose
        footer.recompose = lambda: composed.append(1) or original()  # type: ignore[method-assign]
        await pilot.press("f5", "f4")
        await pilot.pause()
        assert composed == []
        assert "Filter" in {str(k.description) for k in footer.query("FooterKey")}  # F4's keys are still shown


async def test_the_export_dialog_is_built_once_and_reopened_for_the_current_filters(seeded: Destill3D) -> None:
    from textual.widgets import Input, Static

    from destill3d_tui.screens.export_dialog import ExportModal

    app = make_app(seeded, initial_mode="database")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal) and "plan" in app.screen.stamps)
        first = app.screen
        assert "4 match" in str(first.query_one("#export-count", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        database = app.screen
        database.query_one("#q-label", Input).value = "vase"
        database.action_run_query()
        await wait_for(pilot, lambda: table.row_count == 1)
        table.focus()
        counted = first.stamps["plan"][0]
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen is first and first.stamps["plan"][0] > counted)
        assert "vase" in str(first.query_one("#export-filters", Static).render())
        assert "1 match" in str(first.query_one("#export-count", Static).render())
        assert app.focused is first.query_one("#export-path", Input)


async def test_the_other_modes_are_built_off_screen_after_the_first_is_up(seeded: Destill3D) -> None:
    from destill3d_tui.screens.database import DatabaseScreen
    from destill3d_tui.screens.search import SearchScreen

    app = make_app(seeded, initial_mode="search")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.modes_built)
        assert isinstance(app.screen, SearchScreen)  # built, not shown: the curator stays where they were
        database = app._screen_stacks["database"][0]
        assert isinstance(database, DatabaseScreen) and not database.is_current
        table = database.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)  # its first page was read before the first visit
        # and painted off-screen: the visit's first paint finds the table's lines rendered already
        cached = table._row_render_cache.keys()  # Textual's LRUCache: keys() is its way to list them
        assert any(key[0] == table._header_row_key for key in cached)
        rows_read = database.stamps["rows"][0]
        restyled: list[str] = []
        refresh_css = app.refresh_css
        app.refresh_css = lambda *a, **k: (restyled.append(type(app.screen).__name__), refresh_css(*a, **k))[1]
        await pilot.press("f5")
        await wait_for(pilot, lambda: database.stamps["rows"][0] > rows_read)  # the visit reads it again
        assert app.screen is database and app.focused is table
        await pilot.press("f2")  # back to the first screen: styled as it mounted, not restyled on the way
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen))
        assert restyled == []


def test_the_rate_panel_repaints_on_a_change_only() -> None:
    from types import SimpleNamespace

    from destill3d_tui.widgets.rate_panel import RatePanel

    panel = RatePanel(clock=lambda: 1000.0)
    repaints: list[bool] = []
    panel.refresh = lambda *a, layout=False, **k: repaints.append(layout)  # type: ignore[method-assign]
    budget = SimpleNamespace(tokens=5.0, capacity=10.0, paused_until=None, banned=False, message="")
    panel.set_budgets({"sketchfab": budget})
    panel.set_budgets({"sketchfab": budget})  # ten times a second on a busy board: nothing to repaint
    budget.tokens = 4.0  # the same object, updated in place
    panel.set_budgets({"sketchfab": budget})
    assert repaints == [True, False]
