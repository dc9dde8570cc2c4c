"""Snapshot tests (pytest-textual-snapshot) of each screen at 100x30, frozen clock, no blink.

Regenerate with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs
under ``__snapshots__`` before committing them.
"""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable

from destill3d_tui.app import Destill3DApp
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.widgets.bars import BarChart
from destill3d_tui.widgets.pointcloud import PointCloudView

from .conftest import frozen_clock
from .test_app_pilot import settle as settle_workers
from .test_app_pilot import wait_for

SIZE = (100, 30)


def make_app(engine: Destill3D, mode: str) -> Destill3DApp:
    return Destill3DApp(engine, start_pipeline=False, clock=frozen_clock, cursor_blink=False, initial_mode=mode)


async def settle(pilot: Pilot) -> None:
    await settle_workers(pilot.app)
    await pilot.pause()


def test_search_screen(snap_compare, seeded: Destill3D) -> None:
    assert snap_compare(make_app(seeded, "search"), terminal_size=SIZE, run_before=settle)


def test_queue_screen(snap_compare, seeded: Destill3D, model_folder: Path) -> None:
    seeded.queue.add_paths([model_folder], recursive=True)

    async def loaded(pilot: Pilot) -> None:
        table = pilot.app.screen.query_one("#queue-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        await settle(pilot)

    assert snap_compare(make_app(seeded, "queue"), terminal_size=SIZE, run_before=loaded)


def test_snapshots_screen_shows_the_teapot_cloud(snap_compare, seeded: Destill3D) -> None:
    async def teapot(pilot: Pilot) -> None:
        view = pilot.app.screen.query_one(PointCloudView)
        await wait_for(pilot, lambda: view.has_cloud)
        await pilot.press("down", "down", "down")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.current is not None and screen.current.provenance.title == "teapot")
        await settle(pilot)

    assert snap_compare(make_app(seeded, "snapshots"), terminal_size=SIZE, run_before=teapot)


def test_snapshots_screen_provenance_tab(snap_compare, seeded: Destill3D) -> None:
    async def provenance(pilot: Pilot) -> None:
        view = pilot.app.screen.query_one(PointCloudView)
        await wait_for(pilot, lambda: view.has_cloud)
        pilot.app.screen.query_one("#snap-tabs").active = "tab-provenance"
        await settle(pilot)

    assert snap_compare(make_app(seeded, "snapshots"), terminal_size=SIZE, run_before=provenance)


def test_database_screen(snap_compare, seeded: Destill3D) -> None:
    async def loaded(pilot: Pilot) -> None:
        table = pilot.app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await settle(pilot)

    assert snap_compare(make_app(seeded, "database"), terminal_size=SIZE, run_before=loaded)


def test_database_statistics(snap_compare, seeded: Destill3D) -> None:
    async def stats(pilot: Pilot) -> None:
        chart = pilot.app.screen.query_one("#chart-format", BarChart)
        pilot.app.screen.query_one("#db-results", DataTable).focus()
        await pilot.press("s")  # the charts are read when their tab is shown
        await wait_for(pilot, lambda: bool(chart.items))
        await settle(pilot)

    assert snap_compare(make_app(seeded, "database"), terminal_size=SIZE, run_before=stats)


def test_help_screen(snap_compare, engine: Destill3D) -> None:
    assert snap_compare(make_app(engine, "queue"), terminal_size=SIZE, press=["f1"], run_before=settle)


def test_snapshots_screen_predictions_tab(snap_compare, seeded: Destill3D) -> None:
    async def predictions(pilot: Pilot) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.current is not None)
        await pilot.press("down", "down", "down", "3")
        await wait_for(pilot, lambda: screen.current.provenance.title == "teapot")
        await settle(pilot)

    assert snap_compare(make_app(seeded, "snapshots"), terminal_size=SIZE, run_before=predictions)
