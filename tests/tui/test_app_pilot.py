"""Pilot tests: the app driven by key presses against a real engine on a temporary database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import DataTable, Input
from textual.worker import WorkerCancelled

from destill3d_tui.app import Destill3DApp
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.engine.store.filters import SnapshotFilter
from destill3d_tui.screens.database import DatabaseScreen
from destill3d_tui.screens.help import HelpModal
from destill3d_tui.screens.queue import QueueScreen
from destill3d_tui.screens.search import SearchScreen
from destill3d_tui.screens.snapshots import SnapshotsScreen
from destill3d_tui.widgets.pointcloud import PointCloudView
from destill3d_tui.widgets.stage_board import StageBoard

from .conftest import frozen_clock

SIZE = (100, 30)


async def wait_for(pilot: Pilot, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def settle(app: Destill3DApp) -> None:
    """Wait for every worker of the app; one the app cancelled is not a failure.

    Textual's ``workers.wait_for_complete()`` raises ``WorkerCancelled`` when a worker was
    cancelled while it waited, and screens cancel their own requests when a newer one replaces
    them (an exclusive group), so that wait failed a test at random under load.
    """
    outcomes = await asyncio.gather(*(worker.wait() for worker in list(app.workers)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, WorkerCancelled):
            raise outcome


def make_app(engine: Destill3D, **kw: object) -> Destill3DApp:
    return Destill3DApp(engine, start_pipeline=False, clock=frozen_clock, cursor_blink=False, **kw)


async def test_function_keys_switch_modes_and_titles_name_them(seeded: Destill3D) -> None:
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, SearchScreen) and app.screen.title == "Search"
        for key, cls, title in (("f3", QueueScreen, "Queue board"), ("f4", SnapshotsScreen, "Snapshots"),
                                ("f5", DatabaseScreen, "Database"), ("f2", SearchScreen, "Search")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, cls) and app.screen.title == title
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpModal)
        table = app.screen.query_one(DataTable)
        does = {str(table.get_row_at(i)[2]) for i in range(table.row_count)}
        assert {"Retry failed", "Pause/resume", "Export", "Queue selected", "Shading", "Quit"} <= does
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        await settle(app)


async def test_command_palette_offers_every_screen_action(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="queue")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Help", "Search", "Queue", "Snapshots", "Database", "Quit", "Retry failed", "Pause/resume",
                "Cancel item", "Priority +", "Priority -"} <= titles
        assert {"Database: Export", "Search: Queue selected", "Snapshots: Point cloud"} <= titles
        # a command from another screen switches there and runs
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Database: Statistics")
        await command.callback()
        await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen))
        await wait_for(pilot, lambda: app.screen.query_one("#db-tabs").active == "tab-stats")
        await settle(app)


async def test_rotating_the_point_cloud_with_arrow_keys(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        view = app.screen.query_one(PointCloudView)
        await wait_for(pilot, lambda: view.has_cloud)
        await pilot.press("c")
        assert app.focused is view
        before_raster, before_yaw = view.current_raster().lines, view.yaw
        assert sum(line.strip() != "" for line in before_raster) > 5
        await pilot.press("right", "right", "right", "up")
        await pilot.pause()
        assert view.yaw > before_yaw
        assert view.current_raster().lines != before_raster
        await pilot.press("s")
        assert view.shading == "curvature"
        # the list filter narrows in the database
        await pilot.press("escape", "slash", *"rabbit", "enter")
        table = app.screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[2]) == "rabbit"
        await settle(app)


async def test_running_a_database_query_from_the_form(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="database")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("slash", "tab", *"OBJ", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[2]) == "rabbit"
        assert app.screen.filters == SnapshotFilter(source_format="OBJ")
        await wait_for(pilot, lambda: app.screen.total == 1)
        await pilot.press("escape")
        app.screen.query_one("#db-results", DataTable).focus()
        await pilot.press("s")
        await pilot.pause()
        await wait_for(pilot, lambda: bool(app.screen.query_one("#chart-format").items))
        assert dict(app.screen.query_one("#chart-format").items) == {"STL": 3.0, "OBJ": 1.0}
        # enter on a result opens it in the Snapshots screen
        await pilot.press("1")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SnapshotsScreen))
        shown = app.screen
        await wait_for(pilot, lambda: shown.current is not None and shown.current.provenance.title == "rabbit")
        await settle(app)


async def test_queueing_local_files_they_reach_stored_on_the_board(engine: Destill3D, model_folder: Path) -> None:
    app = Destill3DApp(engine, start_pipeline=True, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("o")  # the folder picker
        await pilot.pause()
        field = app.screen.query_one("#picker-root", Input)
        field.focus()
        field.value = ""
        await pilot.press(*str(model_folder), "enter")
        await pilot.pause(0.3)
        await pilot.press("u")  # use the highlighted folder (the root)
        await pilot.pause()
        assert isinstance(app.screen, SearchScreen)
        assert list(app.screen.selected) == [str(model_folder)]
        await pilot.press("a")
        await wait_for(pilot, lambda: not app.screen.selected)
        await pilot.press("f3")
        board = app.screen.query_one(StageBoard)
        await wait_for(pilot, lambda: board.counts.get("stored") == 2, timeout=90)
        await settle(app)


async def test_exporting_a_dataset_from_the_database_screen(seeded: Destill3D, tmp_path: Path) -> None:
    from textual.widgets import ProgressBar, Static

    from destill3d_tui.screens.export_dialog import ExportModal

    app = make_app(seeded, initial_mode="database")
    out = tmp_path / "dataset"
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        table.focus()
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, ExportModal)
        dialog = app.screen
        dialog.query_one("#export-path", Input).value = str(out)
        await pilot.press("ctrl+s")
        status = dialog.query_one("#export-status", Static)
        await wait_for(pilot, lambda: "written to" in str(status.render()), timeout=60)
        assert str(out) in str(status.render()) and "4 snapshots" in str(status.render())
        bar = dialog.query_one(ProgressBar)
        assert bar.total and bar.progress == bar.total
        await settle(app)
    assert out.is_dir() and any(out.iterdir())


async def test_similar_models_and_enter_jumps_to_one(seeded: Destill3D) -> None:
    from textual.widgets import TabbedContent

    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.current is not None)
        first = screen.current.snapshot_id
        screen.query_one(TabbedContent).active = "tab-similar"
        similar = screen.query_one("#similar", DataTable)
        await wait_for(pilot, lambda: similar.row_count == 3, timeout=60)
        target = similar.coordinate_to_cell_key((0, 0)).row_key.value
        assert target != first
        similar.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.current is not None and screen.current.snapshot_id == target)
        assert screen.query_one(TabbedContent).active == "tab-cloud"
        listing = screen.query_one("#snap-list", DataTable)
        assert listing.coordinate_to_cell_key(listing.cursor_coordinate).row_key.value == target
        await settle(app)


async def test_predictions_and_depth_views(engine: Destill3D, corpus_dir: Path) -> None:
    from textual.widgets import Static

    from destill3d_tui.widgets.depth_view import DepthView

    from .conftest import seed_snapshots

    seed_snapshots(engine, corpus_dir, files=("stl/teapot.stl",), views=True)
    app = make_app(engine, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.current is not None)
        table = screen.query_one("#snap-list", DataTable)
        assert str(table.get_row_at(0)[0]) == "vase"
        await pilot.press("3")
        text = str(screen.query_one("#predictions", Static).render())
        assert "vase" in text and "62.0%" in text and "±0.21" in text and "cup" in text
        await pilot.press("6")
        views = screen.query_one(DepthView)
        assert views._views is not None and len(views._views) == 12
        views.focus()
        await pilot.press("n")
        assert views.index == 1
        assert "view 2/12" in views.render().plain
        await settle(app)
