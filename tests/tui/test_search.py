"""The Search screen against a fake Sketchfab on 127.0.0.1: platforms, search, paging, detail,
multi-select across pages, queueing the selection; rate budget shown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Select, Static

from destill3d_tui.app import Destill3DApp
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.engine.config import load_settings
from destill3d_tui.screens.search import SearchScreen
from tests.fakes.sketchfab import FakeSketchfab

from .conftest import frozen_clock
from .test_app_pilot import SIZE, settle, wait_for


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSketchfab]:
    with FakeSketchfab(n_extra=30) as server:
        monkeypatch.setenv("SKETCHFAB_API_KEY", server.token)
        yield server


@pytest.fixture
def remote_engine(fake: FakeSketchfab, tmp_path: Path) -> Iterator[Destill3D]:
    settings = load_settings(None, {
        "database.url": f"sqlite:///{tmp_path / 'search.db'}",
        "platforms.sketchfab.base_url": fake.url,
        "acquisition.allow_hosts": f"{fake.api.hostport},{fake.s3.hostport}",
        "acquisition.license_policy": "any",
    })
    d3d = Destill3D(settings=settings)
    yield d3d
    d3d.close()


async def test_search_page_select_and_queue(remote_engine: Destill3D) -> None:
    app = Destill3DApp(remote_engine, start_pipeline=False, clock=frozen_clock, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        await wait_for(pilot, lambda: "sketchfab" in screen.platform_info)
        select = screen.query_one("#platform", Select)
        assert select.value == "local"  # local files are always offered, first
        select.value = "sketchfab"
        await pilot.press("slash", *"chair", "enter")
        table = screen.query_one("#results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 20)  # the default page size
        detail = str(screen.query_one("#detail", Static).render())
        assert "Old Wooden Chair" in detail and "CC-BY-4.0" in detail and "northwood3d" in detail
        await pilot.press("space", "space")  # selects two and moves down
        assert len(screen.selected) == 2
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: table.row_count == 11)  # 31 chairs in all
        await pilot.press("space")
        assert len(screen.selected) == 3  # selections survive paging
        await wait_for(pilot, lambda: "budget" in str(screen.query_one("#rate-status", Static).render()))
        await pilot.press("a")
        await wait_for(pilot, lambda: not screen.selected, timeout=60)
        counts = remote_engine.queue.counts()
        assert counts["queued"] >= 3
        rows = remote_engine.queue.list(stage="queued", limit=50)
        assert {r.platform for r in rows} == {"sketchfab"}
        await settle(app)
