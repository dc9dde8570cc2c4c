"""The export dialog exports what F5 counted, and says how many before it starts; F4 finds labels.

Real engine, real SQLite file seeded from the corpus (tests/tui/conftest.py), driven by keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from destill3d_tui.engine.api import Destill3D
from destill3d_tui.screens.export_dialog import ExportModal

from .test_app_pilot import SIZE, make_app, settle, wait_for


@pytest.fixture
def varied(seeded: Destill3D) -> Destill3D:
    """The four seeds (teapot labelled vase at 0.62; STL, STL, OBJ, STL), rabbit made an MIT Thingiverse model."""
    seeded.store.execute(
        "UPDATE snapshots SET platform = 'thingiverse', license = 'MIT License', license_spdx = 'MIT', "
        "license_flags = '{}' WHERE title = 'rabbit'"
    )
    return seeded


# (form field, typed value, how many of the four snapshots it selects)
CASES = [
    ("format", "stl", 3),  # the reported case: 3 match, 4 were written
    ("license", "mit", 1),
    ("search", "vase", 1),  # the teapot is labelled vase
]  # the other filters (platform, confidence, tags, dates, ...) are checked on the CLI: tests/dataset


@pytest.mark.parametrize(("field", "value", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_export_dialog_writes_what_f5_counted(varied: Destill3D, tmp_path: Path, field: str, value: str,
                                                    expected: int) -> None:  # fmt: skip
    app = make_app(varied, initial_mode="database")
    out = tmp_path / "dataset"
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        box = app.screen.query_one(f"#q-{field}", Input)
        box.focus()
        box.value = value
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.total == expected and table.row_count == expected)
        assert str(app.screen.query_one("#db-status", Static).render()).startswith(f"{expected} match (")
        table.focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
        dialog = app.screen
        count = dialog.query_one("#export-count", Static)
        await wait_for(pilot, lambda: "will be written" in str(count.render()))
        assert str(count.render()) == f"{expected} match · {expected} will be written"
        dialog.query_one("#export-path", Input).value = str(out)
        await pilot.press("ctrl+s")
        status = dialog.query_one("#export-status", Static)
        await wait_for(pilot, lambda: "written to" in str(status.render()), timeout=60)
        assert str(status.render()).startswith(f"{expected} snapshots written to {out}")
        await settle(app)
    assert len(json.loads((out / "attribution.json").read_text())["objects"]) == expected


async def test_export_dialog_counts_the_licence_policy(varied: Destill3D) -> None:
    """Switching the dialog to commercial licences recounts: CC-BY allows it, so only an NC model drops out."""
    varied.store.execute("UPDATE snapshots SET license_spdx = 'CC-BY-NC-4.0', license_flags = '{}' "
                         "WHERE title = 'teapot'")  # fmt: skip
    app = make_app(varied, initial_mode="database")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#db-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
        count = app.screen.query_one("#export-count", Static)
        await wait_for(pilot, lambda: "will be written" in str(count.render()))
        assert str(count.render()) == "4 match · 4 will be written"
        app.screen.query_one("#export-policy").value = "commercial"
        await wait_for(pilot, lambda: "3 will be written" in str(count.render()))
        assert "1 left out (1 licence (commercial): CC-BY-NC-4.0" in str(count.render())
        await settle(app)


async def test_snapshot_filter_finds_labels_and_terms(varied: Destill3D) -> None:
    """F4's box says "title, label, platform": "vase" finds the teapot labelled vase."""
    app = make_app(varied, initial_mode="snapshots")
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#snap-list", DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("slash", *"vase", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row_at(0)[2]) == "teapot"
        app.screen.query_one("#snap-filter", Input).value = "format:obj thingiverse"
        await wait_for(pilot, lambda: table.row_count == 1 and str(table.get_row_at(0)[2]) == "rabbit")
        app.screen.query_one("#snap-filter", Input).value = "since:someday"
        count = app.screen.query_one("#snap-count", Static)
        await wait_for(pilot, lambda: str(count.render()).startswith("filter: since must be a date"))
        await settle(app)
