"""The app at a curator's pace (issue 15): every screen at 80x24 and 120x40, Escape back to the
list from every input, the export dialog's memory, the folder picker, live counts, a search
cancelled with Escape. Real engine on a temporary SQLite file; the platform is a loopback fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable, DirectoryTree, Footer, Input, Label, Select, Static
from textual.widgets._footer import FooterKey

from destill3d_tui.app import Destill3DApp
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.engine.config import load_settings
from destill3d_tui.engine.events import ItemStored
from destill3d_tui.screens.export_dialog import ExportModal
from destill3d_tui.screens.folder_picker import FolderPicker
from destill3d_tui.screens.help import HelpModal
from destill3d_tui.widgets.path_field import complete_folder
from destill3d_tui.widgets.pointcloud import PointCloudView
from tests.fakes.server import Reply
from tests.fakes.sketchfab import FakeSketchfab

from .conftest import frozen_clock, seed_snapshots
from .test_app_pilot import make_app, settle, wait_for

MAIN_LIST = {"search": "results", "queue": "queue-table", "snapshots": "snap-list", "database": "db-results"}
"""Each mode's main list: where focus starts and where Escape brings it back."""


def footer_fits(app: Destill3DApp) -> bool:
    footer = app.screen.query_one(Footer)
    return sum(key.outer_size.width for key in footer.query(FooterKey)) <= footer.size.width


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_every_screen_fits_and_escape_returns_to_the_list(seeded: Destill3D, size: tuple[int, int]) -> None:
    app = make_app(seeded)
    async with app.run_test(size=size) as pilot:
        for key, mode in zip(("f2", "f3", "f4", "f5"), MAIN_LIST, strict=True):
            await pilot.press(key)
            await wait_for(pilot, lambda mode=mode: app.current_mode == mode)
            await pilot.pause()
            screen, main = app.screen, f"#{MAIN_LIST[mode]}"
            assert footer_fits(app), f"{mode}: footer cut at {size}"
            assert app.focused is screen.query_one(main), f"{mode}: focus starts on {app.focused}"
            assert "F2 search" in screen.sub_title  # the modes are named in the header, not the footer
            for field in screen.query(Input).results(Input) if size == (80, 24) else ():  # layout-independent
                # a visible name beside every input: a Label right before it in the same row
                siblings = list(field.parent.children) if field.parent else []
                before = siblings[siblings.index(field) - 1] if siblings.index(field) else None
                assert isinstance(before, Label), f"{mode}: #{field.id} has no label"
                field.focus()
                await pilot.press("escape")
                assert app.focused is screen.query_one(main), f"{mode}: escape from #{field.id} kept {app.focused}"
        if size == (80, 24):  # the label and confidence columns are on screen at 80 columns
            await pilot.press("f4")
            table = app.screen.query_one("#snap-list", DataTable)
            await wait_for(pilot, lambda: table.row_count == 4)
            assert [str(c.label) for c in table.ordered_columns][:2] == ["label", "conf"]
            assert table.region.width >= sum(c.get_render_width(table) for c in table.ordered_columns[:2])
        await settle(app)


async def test_f4_tabs_and_arrows_move_the_list_not_the_cloud(seeded: Destill3D) -> None:
    app = make_app(seeded, initial_mode="snapshots")
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#snap-list", DataTable)
        view = app.screen.query_one(PointCloudView)
        await wait_for(pilot, lambda: table.row_count == 4 and view.has_cloud)
        yaw = view.yaw
        await pilot.press("1", "down", "down")
        assert app.focused is table and table.cursor_row == 2 and view.yaw == yaw
        await pilot.press("c", "right")  # c hands the arrows to the cloud; escape (shown) takes them back
        assert app.focused is view and view.yaw > yaw
        assert "esc" in {k.key_display for k in app.screen.query_one(Footer).query(FooterKey)}
        await pilot.press("escape")
        assert app.focused is table
        await settle(app)


async def test_help_and_palette_name_keys_not_internals(seeded: Destill3D, monkeypatch: pytest.MonkeyPatch) -> None:
    from destill3d_tui.engine.acquire import rate

    # rate buckets live for the process: tests that ran before in it used fake platforms
    monkeypatch.setattr(rate, "_BUCKETS", {})
    app = make_app(seeded, initial_mode="queue")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Cursor down" not in titles and "Copy selected text" not in titles
        assert len(titles) == len(set(titles))
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpModal))
        table = app.screen.query_one(DataTable)
        keys = {str(table.get_row_at(i)[1]): str(table.get_row_at(i)[2]) for i in range(table.row_count)}
        assert keys.get("+ / =") == "Priority +" and not any("equals_sign" in k for k in keys)
        await pilot.press("escape", "ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press("escape")
        # the Rates tab says something true after local runs
        await pilot.press("4")
        rates = str(app.screen.query_one("#rates").render())
        assert "no platform has been used" not in rates and "local files need none" in rates
        await settle(app)


async def test_export_dialog_starts_on_the_path_and_remembers_it(seeded: Destill3D, tmp_path: Path) -> None:
    out = tmp_path / "my dataset"
    app = make_app(seeded, initial_mode="database")
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
        dialog = app.screen
        path = dialog.query_one("#export-path", Input)
        assert app.focused is path
        count = dialog.query_one("#export-count", Static)
        await wait_for(pilot, lambda: "will be written" in str(count.render()))
        assert str(count.render()) == "4 match · 4 will be written"
        path.value = ""
        await pilot.press(*str(out))
        await pilot.press("tab")  # the next field is the format: typed text goes where the focus shows
        assert app.focused is dialog.query_one("#export-format", Select)
        dialog.query_one("#export-format", Select).value = "numpy"
        await pilot.press("ctrl+s")
        status = dialog.query_one("#export-status", Static)
        await wait_for(pilot, lambda: "written to" in str(status.render()), timeout=60)
        assert str(out) in str(status.render())
        await pilot.press("escape")
        await settle(app)
    assert (out / "train.npz").exists() or any(out.iterdir())
    # a new session on the same database opens the dialog with that path and format
    again = make_app(seeded, initial_mode="database")
    async with again.run_test(size=(80, 24)) as pilot:
        table = again.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(again.screen, ExportModal))
        assert again.screen.query_one("#export-path", Input).value == str(out)
        assert again.screen.query_one("#export-format", Select).value == "numpy"
        await pilot.press("escape")
        await settle(again)


async def test_folder_picker_starts_at_the_typed_folder_and_goes_up(engine: Destill3D, model_folder: Path) -> None:
    inner = model_folder / "inner"
    inner.mkdir()
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#query", Input).value = str(inner)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, FolderPicker))
        picker = app.screen
        field = picker.query_one("#picker-root", Input)
        assert picker.folder == inner and field.value == str(inner)
        assert isinstance(next(iter(field.parent.children)), Label)
        await pilot.press("backspace")  # the parent, above the folder the picker started in
        assert picker.folder == model_folder and field.value == str(model_folder)
        await pilot.press("backspace")
        assert picker.folder == model_folder.parent
        await pilot.press("slash")
        assert app.focused is field
        field.value = ""
        field.value = f"{model_folder}/in"
        await wait_for(pilot, lambda: field._suggestion == f"{inner}/")
        await pilot.press("end", "right", "enter")  # accept the completion, open it
        await wait_for(pilot, lambda: picker.folder == inner)
        assert isinstance(app.focused, DirectoryTree)
        await pilot.press("escape")
        # the next picker (nothing typed in the query) opens where the last one was
        app.screen.query_one("#query", Input).value = ""
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, FolderPicker))
        assert app.screen.folder == inner
        await pilot.press("escape")
        await settle(app)


def test_folder_completion() -> None:
    root = Path(__file__).parent
    assert complete_folder(str(root / "__snap")) == str(root / "__snapshots__") + "/"
    assert complete_folder(str(root / "nothing_like_this")) is None
    assert complete_folder("") is None


async def test_live_counts_follow_stored_events(engine: Destill3D, corpus_dir: Path) -> None:
    seed_snapshots(engine, corpus_dir, files=("stl/teapot.stl",))
    app = make_app(engine, initial_mode="snapshots")
    async with app.run_test(size=(80, 24)) as pilot:
        count = app.screen.query_one("#snap-count", Static)
        await wait_for(pilot, lambda: "of 1 " in str(count.render()))
        added = seed_snapshots(engine, corpus_dir, files=("stl/unit_cube.STL",))[0]
        engine.events.emit(ItemStored(queue_id=1, model_id="local:unit_cube", snapshot_id=added))
        await wait_for(pilot, lambda: "of 2 " in str(count.render()), timeout=5)
        assert app.screen.query_one("#snap-list", DataTable).row_count == 1  # counted, not reloaded
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.screen.total == 2)
        added = seed_snapshots(engine, corpus_dir, files=("obj/rabbit.obj",))[0]
        engine.events.emit(ItemStored(queue_id=2, model_id="local:rabbit", snapshot_id=added))
        await wait_for(pilot, lambda: app.screen.total == 3, timeout=5)
        await pilot.press("2")  # the statistics tab: up at once with what was read, then live as well
        totals = app.screen.query_one("#db-totals", Static)
        await wait_for(pilot, lambda: str(totals.render()).startswith("3 snapshots"))
        added = seed_snapshots(engine, corpus_dir, files=("off/Cube.off",))[0]
        engine.events.emit(ItemStored(queue_id=3, model_id="local:Cube", snapshot_id=added))
        await wait_for(pilot, lambda: str(totals.render()).startswith("4 snapshots"), timeout=5)
        assert app.screen.stats["total_count"] == 4
        await settle(app)


@pytest.fixture
def slow_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Destill3D]:
    """A fake Sketchfab whose search answers after 2 s."""
    with FakeSketchfab(n_extra=0) as server:
        answer = server.api.app

        def slow(request: object) -> Reply:
            reply = answer(request)  # type: ignore[arg-type]
            if "/search" in getattr(request, "path", ""):
                reply.delay_s = 2.0
            return reply

        server.api.app = slow
        monkeypatch.setenv("SKETCHFAB_API_KEY", server.token)
        d3d = Destill3D(settings=load_settings(None, {
            "database.url": f"sqlite:///{tmp_path / 'slow.db'}",
            "platforms.sketchfab.base_url": server.url,
            "acquisition.allow_hosts": f"{server.api.hostport},{server.s3.hostport}",
        }))
        yield d3d
        d3d.close()


async def test_a_running_search_says_so_and_escape_cancels_it(slow_search: Destill3D) -> None:
    app = Destill3DApp(slow_search, start_pipeline=False, clock=frozen_clock, cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "sketchfab" in screen.platform_info)
        screen.query_one("#platform", Select).value = "sketchfab"
        await pilot.press("slash", *"chair", "enter")
        status = screen.query_one("#rate-status", Static)
        await wait_for(pilot, lambda: "searching sketchfab" in str(status.render()))
        assert screen.searching
        await pilot.press("escape")
        assert "search cancelled" in str(status.render()) and not screen.searching
        assert app.focused is screen.query_one("#results", DataTable)
        await settle(app)  # the answer came after the cancel: dropped
        await pilot.pause(0.1)
        assert screen.query_one("#results", DataTable).row_count == 0


def copy_rows(d3d: Destill3D, n: int) -> None:
    """``n`` SQL copies of one stored snapshot's row, 40 of them sharing one processed_at (ties)."""
    columns = [row[1] for row in d3d.store.execute("PRAGMA table_info(snapshots)").fetchall()]
    varied = {"snapshot_id": "printf('%08x-0000-4000-8000-%012x', i, i)", "model_id": "'copy:' || i",
              "title": "'copy ' || i", "original_file_hash": "printf('%064x', i)",
              "processed_at": "datetime('2026-01-01', '+' || MAX(i, 40) || ' seconds')"}
    select = ", ".join(varied.get(c, c) for c in columns)
    with d3d.store.atomic():
        d3d.store.execute(
            f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n}) "
            f"INSERT INTO snapshots ({', '.join(columns)}) SELECT {select} FROM seq, "
            f"(SELECT * FROM snapshots WHERE title = 'teapot')")


async def test_pages_are_read_by_key_in_the_query_order(seeded: Destill3D) -> None:
    from destill3d_tui.engine.store.filters import SnapshotFilter

    copy_rows(seeded, 246)  # 250 in all: pages of 100, 100, 50 on F5
    for flt in (SnapshotFilter(), SnapshotFilter(text="copy 1")):
        expected = [r.snapshot_id for r in seeded.db.query(limit=1000, filter=flt)]
        walked, after = [], None
        while rows := seeded.db.page(after, 37, flt):
            walked += [r.snapshot_id for r in rows]
            after = (rows[-1].processed_at, rows[-1].snapshot_id)
        assert walked == expected
    app = make_app(seeded, initial_mode="database")
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 100 and app.screen.total == 250)
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: app.screen.page == 1 and len(app.screen.page_after) == 3)
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: app.screen.page == 2 and table.row_count == 50)
        third = [r.snapshot_id for r in seeded.db.query(limit=100, offset=200)]
        assert [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(50)] == third
        await pilot.press("right_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: app.screen.page == 1 and table.row_count == 100)
        await settle(app)
