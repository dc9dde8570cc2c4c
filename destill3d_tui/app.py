"""Destill3DApp: the four modes (search, queue, snapshots, database) and the EngineBridge.

The engine never imports Textual. The bridge is the only way screens reach it:

- engine events (any thread) are queued and announced with one :class:`EngineEvents` message
  whose ``can_replace`` lets a burst collapse into one; the app folds them into
  :class:`~destill3d_tui.live.LiveState` at most ``REDRAW_HZ`` times a second inside
  ``batch_update`` and asks the visible screen to redraw;
- blocking engine calls run in thread workers (named groups, ``exit_on_error=False``) that
  answer with :class:`EngineReplied` to the screen that asked, or :class:`EngineFailed`,
  which becomes the error modal (for what the user asked for) or a titled toast.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import get_current_worker

from .live import LiveState

if TYPE_CHECKING:
    from .engine.api import Destill3D
    from .engine.config import Settings
    from .engine.events import Event

REDRAW_HZ = 10.0
"""Live redraws per second: fast enough to feel live, slow enough that 2 cores keep up."""


class EngineEvents(Message):
    """Engine events are waiting in the bridge; one pending copy is enough."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineEvents)


class EngineReplied(Message):
    """A blocking engine call finished; ``tag`` says which request this answers."""

    def __init__(self, tag: str, result: Any) -> None:
        super().__init__()
        self.tag, self.result = tag, result


class EngineFailed(Message):
    """A blocking engine call raised; ``modal`` when the user is waiting for the answer."""

    def __init__(self, title: str, error: BaseException, modal: bool) -> None:
        super().__init__()
        self.title, self.error, self.modal = title, error, modal


class PipelineStopped(Message):
    """The pipeline drained after a quit request: the app may exit."""


def describe_error(error: BaseException) -> str:
    """``reason: message`` for engine errors, ``Type: message`` for anything else (escaped: it may name files)."""
    from .engine.text import display

    reason = getattr(error, "reason", None)
    return display(f"{reason}: {error}" if reason else f"{type(error).__name__}: {error}", newlines=True)


CAPABILITY_MODULES: dict[str, tuple[str, str | None]] = {
    "pipeline": (".pipeline", "Pipeline"),
    "acquire": (".acquire.service", "AcquireService"),
    "classify": (".classify.service", "ClassifyService"),
    "db.export": (".store.dataset", "export"),
    "db.export_plan": (".store.dataset", "export_plan"),
    "db.find_similar": (".store.dataset", "find_similar"),
}
"""Engine modules behind facade members that other parts of the engine fill in."""


class EngineBridge:
    """Joins the engine's threads to the app's message loop. Owns no widget."""

    def __init__(self, app: App, engine: Destill3D | None) -> None:
        self.app, self.engine = app, engine
        self._pending: deque[Event] = deque()  # appended by engine threads, drained by the app
        self._announced = threading.Event()  # set while an EngineEvents message is on its way
        self._memory: dict[str, Any] | None = None  # what the screens asked to remember, this database's
        self._unsubscribe: Callable[[], None] | None = None
        self._capabilities: dict[str, bool] = {}

    def attach(self) -> None:
        if self.engine is not None and self._unsubscribe is None:
            self._unsubscribe = self.engine.events.subscribe(self._on_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: Event) -> None:
        """Runs on the emitting engine thread: queue and return at once.

        One announcement per drain: a busy pipeline emits thousands of events a second, and each
        posted message would cost the UI thread a wake-up even when ``can_replace`` drops it.
        """
        self._pending.append(event)
        if not self._announced.is_set():
            self._announced.set()
            self.app.post_message(EngineEvents())

    def drain(self) -> list[Event]:
        self._announced.clear()  # before reading: an event appended from now on announces itself
        out = []
        while self._pending:
            out.append(self._pending.popleft())
        return out

    # ------------------------------------------------------------ what the screens remember

    def recall(self, key: str, default: Any = None) -> Any:
        """A value a screen remembered for this database (export path, format, picker folder)."""
        return self._load_memory().get(key, default)

    def remember(self, key: str, value: Any) -> None:
        """Keep ``value`` for this database, in the engine's data dir (written off the UI thread)."""
        memory = self._load_memory()
        if memory.get(key) == value:
            return
        memory[key] = value
        snapshot = dict(memory)
        self.app.run_worker(lambda: self._write_memory(snapshot), group="memory", thread=True, exit_on_error=False)

    def _memory_path_and_key(self) -> tuple[Path, str] | None:
        if self.engine is None:
            return None
        from .engine import locations

        return locations.data_dir() / MEMORY_FILE, self.engine.settings.database_url()

    def _load_memory(self) -> dict[str, Any]:
        if self._memory is None:
            self._memory = {}
            where = self._memory_path_and_key()
            if where is not None:
                self._memory = dict(_read_json(where[0]).get(where[1], {}))
        return self._memory

    def _write_memory(self, memory: dict[str, Any]) -> None:
        where = self._memory_path_and_key()
        if where is None:
            return
        path, key = where
        with _MEMORY_LOCK:  # read-modify-write: other databases' entries stay
            everything = _read_json(path)
            everything[key] = memory
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_suffix(".tmp")
            scratch.write_text(json.dumps(everything, indent=1), encoding="utf-8")
            scratch.replace(path)

    def has(self, dotted: str) -> bool:
        """Whether the engine offers ``dotted`` (``"acquire"``, ``"db.export"``, ...) yet; cached."""
        if dotted not in self._capabilities:
            self._capabilities[dotted] = self._probe(dotted)
        return self._capabilities[dotted]

    def _probe(self, dotted: str) -> bool:
        if self.engine is None:
            return False
        module, attribute = CAPABILITY_MODULES.get(dotted, (None, None))
        if module is not None:
            try:  # the facade forwards to this module, which may not have landed yet
                found = importlib.import_module(module, "destill3d_tui.engine")
            except ImportError:
                return False
            if attribute and not hasattr(found, attribute):
                return False
        node: Any = self.engine
        for part in dotted.split("."):
            try:
                node = getattr(node, part, None)
            except Exception:  # a facade property whose service failed to start
                return False
            if node is None:
                return False
        return True

    def call(self, job: Callable[[Destill3D], Any], *, reply_to: MessagePump, tag: str, group: str,
             title: str, modal: bool = False, exclusive: bool = False) -> None:
        """Run ``job(engine)`` in a thread worker; reply to ``reply_to`` or report the failure."""
        engine = self.engine

        def work() -> None:
            if engine is None:
                self.app.post_message(EngineFailed(title, RuntimeError("no engine is open"), modal))
                return
            try:
                result = job(engine)
            except Exception as exc:  # reported to the user, never swallowed
                self.app.post_message(EngineFailed(title, exc, modal))
                return
            if not get_current_worker().is_cancelled:  # a newer request of the same group replaced it
                reply_to.post_message(EngineReplied(tag, result))

        self.app.run_worker(work, name=tag, group=group, thread=True, exit_on_error=False, exclusive=exclusive)


MEMORY_FILE = "tui-state.json"
"""In the engine's data dir: per database URL, what the screens remembered (export path, format...)."""
_MEMORY_LOCK = threading.Lock()


def _read_json(path: Path) -> dict[str, Any]:
    """The memory file's contents; a missing or damaged file is an empty memory, never an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


QUIT_FAILED = "Could not stop the pipeline cleanly"
MODE_KEYS = (("f2", "search", "Search"), ("f3", "queue", "Queue"), ("f4", "snapshots", "Snapshots"),
             ("f5", "database", "Database"))
MODE_HINT = " ".join(f"{key.upper()} {label.lower()}" for key, _, label in MODE_KEYS)
"""Shown in every mode's header: the mode keys without spending footer columns."""


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
        if start_pipeline:
            start_resource_tracker()

    # ------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        self.bridge.attach()
        if self.start_pipeline and self.bridge.has("pipeline"):
            self.bridge.call(lambda d3d: d3d.pipeline.start(), reply_to=self, tag="pipeline_started",
                             group="lifecycle", title="Could not start the pipeline")
        self.switch_mode(self.initial_mode)

    def on_unmount(self) -> None:
        self.bridge.detach()

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

        self.bridge.call(drain, reply_to=self, tag="pipeline_drained", group="lifecycle", title=QUIT_FAILED)

    @on(EngineReplied)
    def _engine_replied(self, message: EngineReplied) -> None:
        if message.tag == "pipeline_drained":
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
    """Whether ``node`` is one of this app's screens or widgets (not a Textual built-in)."""
    return type(node).__module__.startswith(__package__ or "destill3d_tui")


def key_names(binding: Binding) -> str:
    """``+ / =`` for ``plus,equals_sign``: each key of a binding by its display name."""
    from dataclasses import replace

    from textual.keys import format_key

    if binding.key_display:
        return binding.key_display
    names = []
    for key in binding.key.split(","):
        single = replace(binding, key=key.strip())
        modifiers, name = single.parse_key()
        names.append("+".join([*modifiers, format_key(name)]).replace("ctrl+", "^"))
    return " / ".join(names)


def _bindings(items: Iterable[Any]) -> list[Binding]:
    return [b if isinstance(b, Binding) else Binding(*b) for b in items]


def _runner(node: Any, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await node.run_action(action)

    return run


def _switch_and_run(app: App, mode: str, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await app.switch_mode(mode)
        # after the first refresh, so a newly mounted screen has settled its own defaults (tabs, focus)
        app.call_after_refresh(app.screen.run_action, action)

    return run


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
