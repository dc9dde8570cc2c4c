"""Untrusted text shows literally: a model named ``[WIP]`` renders as ``[WIP]``."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static, TextArea

from destill3d_tui.app import Destill3DApp, EngineFailed
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.engine.errors import FormatError
from destill3d_tui.screens.errors import ErrorModal
from destill3d_tui.widgets.text import plain

from .conftest import frozen_clock, seed_snapshots
from .test_app_pilot import SIZE, settle, wait_for


def test_plain_keeps_brackets() -> None:
    assert plain("[WIP] [b]x[/b]").plain == "[WIP] [b]x[/b]"
    assert plain(None).plain == ""


async def test_titles_and_errors_with_markup_render_literally(engine: Destill3D, corpus_dir: Path) -> None:
    seed_snapshots(engine, corpus_dir, files=("stl/teapot.stl",), title_prefix="[WIP] [bold]")
    app = Destill3DApp(engine, start_pipeline=False, clock=frozen_clock, cursor_blink=False, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.get_row_at(0)[2].plain == "[WIP] [bold]teapot"
        await wait_for(pilot, lambda: app.screen.current is not None)
        provenance = str(app.screen.query_one("#provenance", Static).render())
        assert "[WIP] [bold]teapot" in provenance
        # the same text drawn on the terminal, not eaten as markup
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        assert any("[WIP] [bold]teapot" in line for line in lines)

        app.post_message(EngineFailed("Query failed", FormatError("bad [red]thing[/red] in [WIP].stl"), modal=True))
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        text = app.screen.query_one(TextArea).text
        assert text.endswith(": bad [red]thing[/red] in [WIP].stl")
        await pilot.press("escape")
        # a second failure while no modal is open is again a modal; in the background a toast
        app.post_message(EngineFailed("Refresh failed", FormatError("[WIP] toast"), modal=False))
        await wait_for(pilot, lambda: bool(app._notifications))
        note = list(app._notifications)[-1]
        assert note.message.endswith("[WIP] toast") and note.markup is False and note.title == "Refresh failed"
        await settle(app)


CONTROL = "\x1b]0;pwned\x07\x1b[2J\x9b\u202e"  # would retitle and clear the terminal, reorder the line
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def test_plain_escapes_control_characters() -> None:
    assert plain(CONTROL + "x.stl").plain == "\\x1b]0;pwned\\x07\\x1b[2J\\x9b\\u202ex.stl"


async def test_titles_with_terminal_escapes_render_escaped(engine: Destill3D, corpus_dir: Path) -> None:
    seed_snapshots(engine, corpus_dir, files=("stl/teapot.stl",), title_prefix=CONTROL)
    app = Destill3DApp(engine, start_pipeline=False, clock=frozen_clock, cursor_blink=False, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.get_row_at(0)[2].plain == "\\x1b]0;pwned\\x07\\x1b[2J\\x9b\\u202eteapot"
        await wait_for(pilot, lambda: app.screen.current is not None)
        provenance = str(app.screen.query_one("#provenance", Static).render())
        assert "\\x1b]0;pwned" in provenance and "\x1b" not in provenance
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        assert not any(ch in line for line in lines for ch in RAW)
        assert any("\\x1b]0;pwned" in line for line in lines)
        app.post_message(EngineFailed("Query failed", FormatError(f"cannot read {CONTROL}x.stl"), modal=True))
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert app.screen.query_one(TextArea).text.endswith("cannot read \\x1b]0;pwned\\x07\\x1b[2J\\x9b\\u202ex.stl")
        await settle(app)
