"""EngineBridge: the one way the app and its screens reach the engine, and its messages.

The engine never imports Textual; screens never import the app. Both sides meet here:

- engine events (any thread) are queued and announced with one :class:`EngineEvents` message
  whose ``can_replace`` lets a burst collapse into one; the app folds them into its live state
  at a bounded rate;
- a blocking engine call is a *request*: ``bridge.request(title, job, *args, on_reply=...)``
  runs ``job(engine, *args)`` in a thread worker and calls ``on_reply(result)`` on the UI
  thread, through the message queue of the widget or screen that owns ``on_reply``. The
  callback is named at the call site, so a misspelt handler fails there, at once; a reply for a
  screen that has been dismissed in the meantime is dropped (its message queue is closed);
- a call that raises becomes :class:`EngineFailed` (the error modal when the user is waiting
  for the answer, a titled toast otherwise), or goes to the request's ``on_error``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual.app import App
from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import get_current_worker

if TYPE_CHECKING:
    from .engine.api import Destill3D
    from .engine.events import Event
    from .live import LiveState


class EngineEvents(Message):
    """Engine events are waiting in the bridge; one pending copy is enough."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EngineEvents)


class EngineFailed(Message):
    """A blocking engine call raised; ``modal`` when the user is waiting for the answer."""

    def __init__(self, title: str, error: BaseException, modal: bool) -> None:
        super().__init__()
        self.title, self.error, self.modal = title, error, modal


class PipelineStopped(Message):
    """The pipeline drained after a quit request: the app may exit."""


class BridgedApp(Protocol):
    """What screens may rely on in the app that hosts them (without importing it: no cycle)."""

    bridge: EngineBridge
    live: LiveState
    clock: Callable[[], float]
    cursor_blink: bool

    def show_error(self, title: str, text: str) -> None: ...


def describe_error(error: BaseException) -> str:
    """``reason: message`` for engine errors, ``Type: message`` for anything else (escaped: it may name files)."""
    from .engine.text import display

    reason = getattr(error, "reason", None)
    return display(f"{reason}: {error}" if reason else f"{type(error).__name__}: {error}", newlines=True)


Reply = Callable[[Any], Any]
"""Called on the UI thread with what the request's job returned (or, for ``on_error``, what it raised)."""


def reply_owner(on_reply: Reply | None, owner: MessagePump | None) -> MessagePump | None:
    """The message pump a reply goes through: ``owner``, else the one whose bound method ``on_reply`` is."""
    if owner is not None:
        return owner
    bound_to = getattr(on_reply, "__self__", None)
    return bound_to if isinstance(bound_to, MessagePump) else None


def deliver(owner: MessagePump, callback: Reply, value: Any, wanted: Callable[[], bool] | None = None) -> bool:
    """Call ``callback(value)`` on the UI thread through ``owner``'s queue, unless ``owner`` is gone.

    Safe from any thread. A dismissed screen's queue is closed: the reply is dropped there, and a
    reply already queued when the screen closed is dropped when it comes up. ``wanted`` is asked
    on the UI thread as the reply comes up: ``False`` drops it.
    """

    def run() -> None:
        if owner.is_running and not owner._closing and (wanted is None or wanted()):
            callback(value)  # Textual sets _closing as the screen is dismissed

    return owner.call_later(run)


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

    # ------------------------------------------------------------ requests

    def request(self, title: str, job: Callable[..., Any], *args: Any, on_reply: Reply | None,
                on_error: Reply | None = None, owner: MessagePump | None = None, group: str | None = None,
                modal: bool = False, exclusive: bool = False) -> None:
        """Run ``job(engine, *args)`` in a thread worker; ``on_reply(result)`` runs on the UI thread.

        ``on_reply`` is required (``None`` says, explicitly, that nothing waits for the result) and
        checked here, so a wrong handler fails at the call site. Replies go through ``owner`` (by
        default the widget or screen ``on_reply`` is a method of, else the app): a reply for an
        owner that has closed is dropped. A raised exception goes to ``on_error`` when given, else
        becomes :class:`EngineFailed` titled ``title``. ``group`` with ``exclusive``: a newer
        request of the group cancels the older one's reply.
        """
        for name, callback in (("on_reply", on_reply), ("on_error", on_error)):
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be callable or None, not {callback!r}")
        pump = reply_owner(on_reply, owner) or reply_owner(on_error, None) or self.app
        engine = self.engine

        def work() -> None:
            worker = get_current_worker()

            # asked again on the UI thread, where a newer request cancels this one: between a check
            # here and the reply coming up, the newer request may have been made and even answered
            # (an older snapshot's reply then replaced the newer one on screen)
            def wanted() -> bool:
                return not worker.is_cancelled

            try:
                if engine is None:
                    raise RuntimeError("no engine is open")
                result = job(engine, *args)
            except Exception as exc:  # reported to the user (or the requester), never swallowed
                if wanted():
                    self._failed(pump, title, exc, modal, on_error, wanted)
                return
            if on_reply is not None and wanted():
                deliver(pump, on_reply, result, wanted)

        name = getattr(on_reply, "__name__", None) or title
        self.app.run_worker(work, name=name, group=group or name, thread=True, exit_on_error=False,
                            exclusive=exclusive)

    def _failed(self, pump: MessagePump, title: str, error: Exception, modal: bool, on_error: Reply | None,
                wanted: Callable[[], bool]) -> None:  # fmt: skip
        if on_error is None:  # a titled toast, dropped like a reply when a newer request replaced this one
            pump, on_error = self.app, lambda exc: self.app.post_message(EngineFailed(title, exc, modal))
        deliver(pump, on_error, error, wanted)

    def cancel(self, group: str) -> None:
        """Drop the replies of the running requests of ``group`` (their jobs end on their own)."""
        self.app.workers.cancel_group(self.app, group)

    # ------------------------------------------------------------ what the engine offers

    def has(self, dotted: str) -> bool:
        """Whether the facade offers ``dotted`` (``"acquire"``, ``"db.export"``, ...); cached."""
        if dotted not in self._capabilities:
            self._capabilities[dotted] = self._probe(dotted)
        return self._capabilities[dotted]

    def _probe(self, dotted: str) -> bool:
        node: Any = self.engine
        if node is None:
            return False
        for part in dotted.split("."):
            try:
                node = getattr(node, part, None)
            except Exception:  # a facade property whose service failed to start
                return False
            if node is None:
                return False
        return True

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
