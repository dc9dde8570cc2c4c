"""Destill3DApp: the four modes (search, queue, snapshots, database) around one EngineBridge.

The bridge (:mod:`destill3d_tui.bridge`) is the only way screens reach the engine; screens import
it, never this module. The app owns the bridge and:

- folds the bridge's queued engine events into :class:`~destill3d_tui.live.LiveState` at most
  ``REDRAW_HZ`` times a second inside ``batch_update`` and asks the visible screen to redraw;
- turns :class:`~destill3d_tui.bridge.EngineFailed` into the error modal (for what the user asked
  for) or a titled toast.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer

from .bridge import EngineBridge, EngineEvents, EngineFailed, describe_error
from .live import LiveState
from .screens.base import MODE_KEYS
from .screens.help import key_names

if TYPE_CHECKING:
    from .engine.api import Destill3D
    from .engine.config import Settings

REDRAW_HZ = 10.0
"""Live redraws per second: fast enough to feel live, slow enough that 2 cores keep up."""


QUIT_FAILED = "Could not stop the pipeline cleanly"
PREBUILD_AFTER_S = 0.3
"""After the first screen is up, the other modes are built off-screen, one at a time, this long
apart: a first visit then costs what any later switch costs (building a screen on its first key
took 310-390 ms at 100,000 snapshots with 2 workers busy: composing, mounting and styling every
widget, then the first layout)."""
BUILD_WAIT_S = 10.0
"""How long a shutdown waits for a screen being built off-screen to finish mounting."""


class Destill3DApp(App[int]):
    """Search, queue board, snapshot inspector and database, all from the keyboard."""

    TITLE = "Destill3D"
    CSS_PATH = "styles/global.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", tooltip="Every key binding"),
        # the header names the modes (MODE_HINT): the footer keeps its 80 columns for the screen's keys
        *[Binding(key, f"switch_mode('{mode}')", label, show=False, tooltip=f"The {label} screen")
          for key, mode, label in MODE_KEYS],
        # shown in F1 and the palette, not the footer: an 80-column footer has room for the modes only
        Binding("q", "quit", "Quit", show=False, tooltip="Finish in-flight items, then quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, engine: Destill3D | None = None, *, start_pipeline: bool = True,
                 clock: Callable[[], float] = time.time, cursor_blink: bool = True,
                 initial_mode: str = "search") -> None:
        from .screens import MODE_SCREENS

        self.MODES = dict(MODE_SCREENS)
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # no animations unless asked for: a tab's sliding underline repainted the tab bar every
            # frame for 0.3 s after each tab key, on the same thread (and cores) as the key's answer
            self.animation_level = "none"
        self.bridge = EngineBridge(self, engine)
        self.live = LiveState(clock=clock)
        self.clock = clock
        self.cursor_blink = cursor_blink
        self.start_pipeline = start_pipeline
        self.initial_mode = initial_mode
        self._last_redraw = 0.0
        self._redraw_timer: Timer | None = None
        self._quitting = False
        self._error_open = False
        self._building: asyncio.Event | None = None  # set when the screen being built off-screen is mounted
        self._rendered: weakref.WeakSet[Screen] = weakref.WeakSet()  # painted off-screen once (or shown)
        self._styled_first_as = -1
        if start_pipeline:
            start_resource_tracker()

    # ------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        settle_heap()
        self.bridge.attach()
        if self.start_pipeline and self.bridge.has("pipeline"):
            self.bridge.request("Could not start the pipeline", lambda d3d: d3d.pipeline.start(), on_reply=None,
                                group="lifecycle")
        self._styled_first_as = self._css_update_count
        self.switch_mode(self.initial_mode)
        self.set_timer(PREBUILD_AFTER_S, self._prebuild_next_mode)

    @property
    def modes_built(self) -> bool:
        """Whether every mode's screen is built and has been resumed once (shown, or off-screen by
        :meth:`_prebuild_next_mode`)."""
        stacks = [self._screen_stacks.get(mode) for mode in self.MODES]
        return all(stack and "resumed" in getattr(stack[0], "stamps", {}) for stack in stacks) \
            and not self._unrendered()

    def _unrendered(self) -> list[Screen]:
        """Built mode screens never shown nor rendered off-screen yet (their first paint is still to do)."""
        return [stack[0] for stack in self._screen_stacks.values()
                if stack and stack[0].is_attached and not stack[0].is_current and stack[0] not in self._rendered]

    async def _prebuild_next_mode(self) -> None:
        """Build one mode's screen off-screen (not shown), then schedule the next.

        Textual builds a mode's screen on the first ``switch_mode`` to it. Here the screen is
        composed and mounted (every widget) first, then entered as its mode's stack and resumed,
        as ``switch_mode`` would, so it is styled, laid out at the terminal's size and reads its
        first page now; the first visit finds it built, as any later visit does. One screen per
        turn, so a key pressed meanwhile waits for one build at most. (These are Textual's own
        steps of ``switch_mode``; a Textual without them builds on the first visit, as before.)
        """
        pending = [mode for mode in self.MODES if mode not in self._screen_stacks]
        mount = getattr(self, "_get_screen", None)
        if mount is None or self._quitting or self._exit or not self.is_running:
            return
        self._note_first_screen_styled()
        if self._render_off_screen():
            self.call_after_refresh(self.set_timer, PREBUILD_AFTER_S, self._prebuild_next_mode)
            return
        if not pending:
            return
        mode = pending[0]
        screen = self.MODES[mode]()
        self._building = asyncio.Event()
        styled_as = self._css_update_count  # the CSS state (theme) the screen is styled for as it mounts
        try:
            _, mounted = mount(screen)
            # its mode's stack at once, as switch_mode does: a switch there meanwhile shows this screen
            self._screen_stacks[mode] = [screen]
            self._load_screen_css(screen)
            await mounted
        finally:
            self._building.set()
        if not self.is_running or self._exit:
            return  # quitting: Textual's shutdown closes every screen in a stack, this one too
        if not screen.is_current:  # (a switch there meanwhile resumed it already)
            # styled as it mounted: the first visit restyles only after a theme change since (switch_mode
            # compares the counts; otherwise it re-read the whole stylesheet on every first visit)
            screen._css_update_count = styled_as
            screen.post_message(events.ScreenResume())
        self.call_after_refresh(self.set_timer, PREBUILD_AFTER_S, self._prebuild_next_mode)

    def _note_first_screen_styled(self) -> None:
        """The first screen is styled as it mounts, but Textual counts it unstyled: mounting was still
        to come when ``switch_mode`` compared the counts. Left so, the first return to it re-read the
        whole stylesheet (80 ms at 100 columns); a theme change since is still picked up."""
        stack = self._screen_stacks.get(self.initial_mode)
        screen = stack[0] if stack else None
        if screen is not None and screen.is_attached and screen._css_update_count == -1 \
                and self._css_update_count == self._styled_first_as:
            screen._css_update_count = self._styled_first_as

    def _render_off_screen(self) -> bool:
        """Paint one built, hidden screen into its compositor (not the terminal): the first paint of a
        screen renders every widget's lines (a table's cells, ~35 ms for F3's at 100x30), which is
        then cached, so the first visit costs what a later one does. Whether one was painted."""
        self._rendered.add(self.screen)  # shown: painted already
        for screen in self._unrendered():
            self._rendered.add(screen)
            try:
                screen._refresh_layout(self.size)
                screen._compositor.render_update(full=True)
            except Exception as exc:  # a warm-up only: the visit paints it anyway
                self.log.warning(f"off-screen paint of {screen!r} failed: {exc!r}")
            return True
        return False

    def on_unmount(self) -> None:
        self.bridge.detach()

    async def _shutdown(self) -> None:
        # The app's own exit waits for a build (a timer's callback runs to its end before the exit
        # message), but Pilot's run_test shuts the app down from outside: without this wait, a
        # screen still mounting off-screen ran its mount handlers after shutdown pruned its widgets.
        if self._building is not None and not self._building.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._building.wait(), BUILD_WAIT_S)
        await super()._shutdown()

    async def action_quit(self) -> None:
        """Drain in-flight items to a committed stage, then exit."""
        if self._quitting:
            self.notify("Still finishing in-flight items…", title="Quitting")
            return
        self._quitting = True
        engine = self.bridge.engine
        if engine is None or not self.bridge.has("pipeline") or engine.pipeline.state == "stopped":
            self.exit(0)
            return
        self.notify("Finishing in-flight items, then quitting…", title="Quitting", timeout=30)

        def drain(d3d: Destill3D) -> None:
            d3d.pipeline.stop(drain=True)

        self.bridge.request(QUIT_FAILED, drain, on_reply=self._pipeline_drained, group="lifecycle")

    def _pipeline_drained(self, _: None) -> None:
        self.exit(0)

    # ------------------------------------------------------------ events -> redraws

    @on(EngineEvents)
    def _engine_events(self) -> None:
        wait = 1.0 / REDRAW_HZ - (time.monotonic() - self._last_redraw)
        if wait > 0:
            if self._redraw_timer is None:
                self._redraw_timer = self.set_timer(wait, self._redraw)
            return
        self._redraw()

    def _redraw(self) -> None:
        self._redraw_timer = None
        self._last_redraw = time.monotonic()
        events = self.bridge.drain()
        if not events or not self.screen_stack:  # nothing new, or the app is shutting down
            return
        with self.batch_update():
            self.live.apply(events)
            apply = getattr(self.screen, "apply_live", None)
            if apply is not None:
                apply(self.live, events)

    # ------------------------------------------------------------ failures

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        text = describe_error(message.error)
        if self._quitting and message.title == QUIT_FAILED:
            self.exit(1)
            return
        if message.modal and not self._error_open:
            self.show_error(message.title, text)
        else:
            self.notify(text, title=message.title, severity="error", markup=False, timeout=8)

    def show_error(self, title: str, text: str) -> None:
        from .screens.errors import ErrorModal

        self._error_open = True

        def closed(_: Any) -> None:
            self._error_open = False

        self.push_screen(ErrorModal(title, text), closed)

    # ------------------------------------------------------------ help and the command palette

    def action_help(self) -> None:
        from .screens.help import HelpModal

        if not isinstance(self.screen, HelpModal):
            self.push_screen(HelpModal(self.binding_catalogue()))

    def binding_catalogue(self) -> list[tuple[str, list[Binding]]]:
        """(section, bindings) for the app and every screen and widget with keys of its own."""
        from .screens import binding_sections

        return [("Everywhere", [*_bindings(self.BINDINGS), Binding("ctrl+p", "command_palette", "Commands")]),
                *binding_sections()]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for binding in _bindings(self.BINDINGS):
            if binding.key != "ctrl+q":
                yield SystemCommand(binding.description, f"{binding.tooltip} ({key_names(binding)})",
                                    _runner(self, binding.action))
        seen: set[str] = set()
        for node in [screen, *screen.focus_chain]:
            if not _ours(node):  # Textual's own widgets: "Cursor down", "Copy selected text" are not commands
                continue
            for binding in _bindings(getattr(node, "BINDINGS", [])):
                if binding.description and binding.description not in seen:
                    seen.add(binding.description)
                    yield SystemCommand(f"{binding.description}", f"{binding.tooltip or ''} ({key_names(binding)})",
                                        _runner(node, binding.action))
        for mode, cls in self.MODES.items():  # the other screens' actions: switch there, then run
            if isinstance(screen, cls):
                continue
            for binding in _bindings(getattr(cls, "BINDINGS", [])):
                if binding.description and binding.show:
                    yield SystemCommand(f"{cls.TITLE}: {binding.description}",
                                        f"{binding.tooltip or ''} ({key_names(binding)} on {cls.TITLE})",
                                        _switch_and_run(self, mode, binding.action))
        yield SystemCommand("Theme", "Change the colour theme", self.action_change_theme)


def _ours(node: Any) -> bool:
    """Whether ``node``'s keys are this app's: the class its ``BINDINGS`` come from is ours (a
    subclass of a Textual built-in, such as ``widgets.table.PageTable``, keeps the built-in's
    "Cursor down" keys, which are not commands)."""
    owner = next((cls for cls in type(node).__mro__ if "BINDINGS" in vars(cls)), type(node))
    return owner.__module__.startswith(__package__ or "destill3d_tui")


def _bindings(items: Iterable[Any]) -> list[Binding]:
    return [b if isinstance(b, Binding) else Binding(*b) for b in items]


def _runner(node: Any, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await node.run_action(action)

    return run


def _switch_and_run(app: App, mode: str, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await app.switch_mode(mode)
        screen = app.screen
        # a newly mounted screen first settles its own defaults (its tabs pick their first tab on
        # mount, after the screen's own mount): wait for the refresh that showed it, then one more
        deadline = time.monotonic() + 2.0
        while "resumed" not in getattr(screen, "stamps", {}) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        screen.call_after_refresh(screen.run_action, action)

    return run


GC_THRESHOLDS = (10_000, 10, 100)
"""Young collections every 10,000 allocations (not 700), a full one considered every 100 middle ones (not 10)."""


def settle_heap() -> None:
    """Keep the cyclic collector's full sweeps rare and short: they stop every thread, the UI's too.

    A full collection walks every tracked object while holding the GIL. With the engine's libraries
    loaded and a busy pipeline allocating in this process, one came every few seconds and took
    200-400 ms on a loaded machine: the slowest key presses of all. ``gc.freeze`` after one
    collection leaves what exists now (imported libraries, the engine, the app) out of later
    sweeps (screens freeze their widgets the same way once built: ``screens.base.Settles``);
    higher thresholds make every kind of collection rarer. What reference counting frees is freed
    at once as before; only cyclic garbage waits longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_app(settings: Settings) -> int:
    """Open the engine, run the app, close the engine (drained) whatever happens."""
    from .engine.errors import Destill3DError

    try:
        from .engine.api import Destill3D

        engine = Destill3D(settings=settings)
    except Destill3DError as exc:
        print(f"destill3d-tui: {exc.reason}: {exc}", file=sys.stderr)
        return 2
    try:
        with children_output_to_log():
            result = Destill3DApp(engine).run()
    finally:
        engine.close()
    return int(result or 0)


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker while ``sys.stderr`` is a real file.

    Extraction children (spawn context) need the tracker; started lazily inside the app it
    would be handed Textual's stderr capture, whose ``fileno()`` is -1 ("bad value(s) in
    fds_to_keep"), and every item would fail.
    """
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


@contextlib.contextmanager
def children_output_to_log() -> Iterator[Path | None]:
    """Point file descriptors 1 and 2 at a log file while the app runs.

    Child processes (extraction workers, native libraries) inherit fds 1 and 2 and would
    print over the screen. Textual draws through ``sys.__stderr__`` and sizes the screen
    from ``sys.__stdout__``, so those two get private duplicates of the terminal.
    """
    if not (sys.__stdout__ and sys.__stderr__ and sys.__stdout__.isatty() and sys.__stderr__.isatty()):
        yield None
        return
    from .engine import locations

    log_path = locations.ensure_dir(locations.cache_dir()) / "tui-children.log"
    saved_objects = (sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr)
    saved_fds = (os.dup(1), os.dup(2))
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    start_resource_tracker()  # its stderr is fd 2 now: the log
    terminal_out = os.fdopen(os.dup(saved_fds[0]), "w", encoding="utf-8", errors="replace")
    terminal_err = os.fdopen(os.dup(saved_fds[1]), "w", encoding="utf-8", errors="replace")
    sys.__stdout__ = sys.stdout = terminal_out  # type: ignore[misc]
    sys.__stderr__ = sys.stderr = terminal_err  # type: ignore[misc]
    try:
        yield log_path
    finally:
        sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr = saved_objects  # type: ignore[misc]
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for handle in (terminal_out, terminal_err):
            handle.close()
        for fd in saved_fds:
            os.close(fd)
