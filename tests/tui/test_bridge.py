"""The bridge: a request names its reply handler, replies run on the UI thread, a dismissed screen's
reply is dropped, and no UI module imports the app (issue 17)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from textual.screen import ModalScreen
from textual.widgets import Static

from destill3d_tui.app import Destill3DApp
from destill3d_tui.engine.api import Destill3D
from destill3d_tui.screens.database import DatabaseScreen

from .conftest import frozen_clock
from .test_app_pilot import SIZE, settle, wait_for

UI_PACKAGES = ("destill3d_tui.app", "destill3d_tui.bridge", "destill3d_tui.screens", "destill3d_tui.widgets",
               "destill3d_tui.live")
ENGINE_STAGES = ("acquire", "extract", "classify", "store", "pipeline", "queue", "services")


def make_app(engine: Destill3D | None, **kw: Any) -> Destill3DApp:
    return Destill3DApp(engine, start_pipeline=False, clock=frozen_clock, cursor_blink=False, **kw)


class Waiting(ModalScreen[None]):
    """A modal that asks the engine for something and may be dismissed before the answer comes."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Any] = []

    def compose(self) -> Any:
        yield Static("waiting")

    def show_answer(self, answer: Any) -> None:
        self.answers.append(answer)


async def test_a_misnamed_or_missing_handler_fails_at_the_call_site(engine: Destill3D) -> None:
    app = make_app(engine, initial_mode="database")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DatabaseScreen)
        with pytest.raises(AttributeError):  # a typo in the handler's name: no silent drop
            screen.ask("Count", lambda d3d: d3d.db.count(), on_reply=screen.show_cuont)  # type: ignore[attr-defined]
        with pytest.raises(TypeError):  # a handler is required (None says so explicitly)
            screen.ask("Count", lambda d3d: d3d.db.count())  # type: ignore[call-arg]
        with pytest.raises(TypeError):  # a name is not a handler
            app.bridge.request("Count", lambda d3d: d3d.db.count(), on_reply="show_count")  # type: ignore[arg-type]


async def test_the_reply_runs_on_the_ui_thread_with_the_jobs_result(engine: Destill3D) -> None:
    app = make_app(engine)
    threads: dict[str, int] = {}
    got: list[int] = []

    def job(d3d: Destill3D, extra: int) -> int:
        threads["job"] = threading.get_ident()
        return d3d.db.count() + extra

    def reply(value: int) -> None:
        threads["reply"] = threading.get_ident()
        got.append(value)

    async with app.run_test(size=SIZE) as pilot:
        app.bridge.request("Count", job, 5, on_reply=reply)
        await wait_for(pilot, lambda: bool(got))
    assert got == [5]
    assert threads["reply"] == threading.get_ident() != threads["job"]


async def test_a_reply_for_a_dismissed_screen_is_dropped(engine: Destill3D) -> None:
    app = make_app(engine)
    release = threading.Event()
    async with app.run_test(size=SIZE) as pilot:
        modal = Waiting()
        await app.push_screen(modal)
        app.bridge.request("Slow", lambda d3d: release.wait(10) and 42, on_reply=modal.show_answer, group="slow")
        modal.dismiss()
        await pilot.pause()
        release.set()
        await settle(app)
        await pilot.pause(0.1)
        assert modal.answers == []  # dropped, and no error on the screen below
        assert not app._notifications  # nothing went wrong, nothing to say
        # the same request to a live modal is answered
        live = Waiting()
        await app.push_screen(live)
        app.bridge.request("Quick", lambda d3d: 7, on_reply=live.show_answer)
        await wait_for(pilot, lambda: live.answers == [7])


async def test_an_older_reply_still_queued_when_a_newer_request_is_made_is_dropped(engine: Destill3D) -> None:
    """The F4 list's arrow keys: the older snapshot's reply must not replace the newer one on screen.

    The older job answers while the UI thread is busy, so its reply waits in the queue (it had passed
    the worker thread's cancellation check); the newer request is made before the queue is read.
    """
    app = make_app(engine)
    got: list[str] = []
    started, go, answered = threading.Event(), threading.Event(), threading.Event()

    def older(d3d: Destill3D) -> str:
        started.set()
        go.wait(10)
        answered.set()
        return "older"

    async with app.run_test(size=SIZE) as pilot:
        app.bridge.request("Older", older, on_reply=got.append, group="shown", exclusive=True)
        await wait_for(pilot, started.is_set)
        go.set()  # from here the UI thread is blocked until the newer request is made
        assert answered.wait(10)
        time.sleep(0.5)  # the worker thread passes its check and queues the reply meanwhile
        app.bridge.request("Newer", lambda d3d: "newer", on_reply=got.append, group="shown", exclusive=True)
        await wait_for(pilot, lambda: "newer" in got)
        await settle(app)
        await pilot.pause(0.1)
    assert got == ["newer"]


async def test_a_failure_goes_to_on_error_or_becomes_a_titled_toast(engine: Destill3D) -> None:
    app = make_app(engine)
    errors: list[BaseException] = []

    def boom(d3d: Destill3D) -> None:
        raise ValueError("no such thing")

    async with app.run_test(size=SIZE) as pilot:
        app.bridge.request("Asked", boom, on_reply=None, on_error=errors.append)
        await wait_for(pilot, lambda: bool(errors))
        assert isinstance(errors[0], ValueError)
        app.bridge.request("Could not do it", boom, on_reply=None)
        await wait_for(pilot, lambda: any(n.title == "Could not do it" for n in app._notifications))


def test_no_ui_module_imports_the_app_or_an_engine_stage() -> None:
    """grimp reads every import, inside functions and under TYPE_CHECKING too."""
    import grimp

    graph = grimp.build_graph("destill3d_tui", cache_dir=None)
    ui = {m for m in graph.modules if m.startswith(UI_PACKAGES)}
    cycles = [(m, other) for m in ui for other in graph.find_modules_directly_imported_by(m)
              if other in ui and graph.chain_exists(importer=other, imported=m)]
    assert cycles == []
    screens = {m for m in ui if m.startswith(("destill3d_tui.screens", "destill3d_tui.widgets"))}
    reaching = [(m, other) for m in screens for other in graph.find_modules_directly_imported_by(m)
                if other.startswith(tuple(f"destill3d_tui.engine.{s}" for s in ENGINE_STAGES))
                or other == "destill3d_tui.app"]
    assert reaching == []
