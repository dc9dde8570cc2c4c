"""Parse every file in a supervised child process.

OpenCASCADE, assimp and friends can segfault, loop or allocate without end on hostile files.
Each worker is a long-lived child (``spawn`` context, so no inherited locks or threads) that
holds one file at a time under an address-space cap (``RLIMIT_AS``), one BLAS/OpenMP thread,
its own session (so its whole process group can be killed) and a fresh temp dir per item as
its working directory. The supervisor knows which file each child holds, so a crash, hang or
runaway allocation fails that file alone:

- killed by a signal (SIGSEGV, SIGBUS, ...)          -> ``IsolationError(reason="parser_crashed")``
- no answer within ``timeout_s``                     -> ``IsolationError(reason="timeout")``
- ``MemoryError`` / allocation failure near the cap  -> ``IsolationError(reason="memory_limit")``

and the dead child is replaced before the next file. A plain ``ProcessPoolExecutor`` would
break the whole pool on the first crash. Snapshots come back as ``Snapshot.to_bytes("exact")``
so nothing is lost in transit.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import Destill3DError, ExtractionError

DEFAULT_TARGET = "destill3d_tui.engine.extract.isolate:extract_item"
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "TBB_NUM_THREADS")  # fmt: skip
ARCHIVE_MAX_ENTRIES = 5000  # a model's archive holds a few files; thousands of entries is an attack
POLL_S = 0.05  # how often the supervisor samples a busy child's memory and checks the clock
NEAR_CAP = 0.8  # a native abort with virtual memory above this share of the cap counts as memory_limit
_ENV_LOCK = threading.Lock()


@dataclass
class _Task:
    key: Any
    path: str
    options: Any
    provenance: Any
    future: Future
    call: dict[str, Any] = field(default_factory=dict)  # extra keywords for the target (archive member ...)


# ---------------------------------------------------------------- the child side


def extract_item(
    path: str, *, options: Any = None, provenance: Any = None, member: str | None = None, list_models: bool = False
) -> Any:
    """The default child target: ``extract_file``, unpacking an archive into the item dir first.

    A zip/tar (that is not itself a 3D format such as 3MF) is unpacked by ``engine.archive``
    here, under this worker's timeout and address-space cap, into the current directory, which
    the supervisor made the item's temp dir. ``member`` names the model file to extract (its
    sidecars come along); without it the best model is chosen. ``list_models`` unpacks nothing
    and answers the archive's model files (``ArchiveMember`` name, size, sha256) after the same
    checks, or None when ``path`` is not an archive.
    """
    from . import extract_file

    if not _is_archive_input(path):
        if list_models:
            return None  # a model file (a 3MF is a zip too): nothing to list
        if member is not None:
            raise _not_an_archive(path)
        return extract_file(path, options=options, provenance=provenance)
    from ..archive import ArchiveLimits, choose_model_files, safe_extract
    from ..archive import list_models as archive_models

    limits = ArchiveLimits(max_entries=ARCHIVE_MAX_ENTRIES)
    if list_models:
        return archive_models(Path(path), limits)
    unpacked = Path.cwd() / "unpacked"
    models = choose_model_files(safe_extract(Path(path), unpacked, limits, member))
    if not models:
        what = f"no model file named {member!r}" if member else "no model file"
        raise _not_an_archive(path, f"{Path(path).name}: the archive holds {what}")
    chosen = models[0]
    inside = chosen.relative_to(unpacked.resolve()).as_posix()
    return extract_file(str(chosen), options=options, provenance=_member_provenance(provenance, path, inside))


def _is_archive_input(path: str) -> bool:
    """An archive, not a 3D format that happens to be a zip (3MF): detection decides first."""
    from ..archive import is_archive
    from ..errors import FormatError
    from ..formats import detect_format

    try:
        detect_format(path)
    except FormatError as exc:
        return exc.reason == "format_unsupported" and is_archive(Path(path))
    return False


def _not_an_archive(path: str, message: str = "") -> Exception:
    from ..errors import FormatError

    return FormatError(message or f"{Path(path).name} is not an archive", reason="format_unsupported")


def _member_provenance(provenance: Any, archive: str, member: str) -> Any:
    """The archive's path stays the source; the member is the original file name."""
    from dataclasses import replace

    from ..store.snapshot import Provenance

    base = replace(provenance) if provenance is not None else Provenance(source_id=archive)
    base.source_id = base.source_id or archive
    base.original_filename = member
    return base


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its supervisor goes (a SIGKILLed runner's workers
    would otherwise finish their file and hold its memory); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the supervisor died before the request took effect


def _child_setup(memory_limit_mb: int, temp_root: str, nice: int = 0) -> None:
    """Everything a worker does once before its first file."""
    import resource

    os.setsid()  # own process group: the supervisor kills the child and anything it started
    _die_with_parent()
    if nice > 0:
        # below the parent: the terminal app's keys and the pipeline's own threads (classify,
        # store) get a CPU first; a parse still uses every cycle nothing else wants
        os.nice(nice)
    for name in THREAD_ENV:
        os.environ[name] = "1"
    if memory_limit_mb > 0:
        cap = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.dup2(2, 1)  # native libraries print to stdout; keep the parent's stdout for --json
    Path(temp_root).mkdir(parents=True, exist_ok=True)
    os.chdir(temp_root)
    import logging

    logging.getLogger("trimesh").setLevel(logging.CRITICAL)


WARM_MODULES = (
    "numpy", "scipy.spatial", "trimesh", "open3d", "laspy", "OCP.STEPCAFControl", "OCP.IGESControl", "OCP.BRepMesh",
    "destill3d_tui.engine.extract.core", "destill3d_tui.engine.extract.load", "destill3d_tui.engine.store.snapshot",
)  # fmt: skip


def _warm_up(conn: Any) -> None:
    """Import the common numeric stack before the first file, so its clock measures parsing only.

    The kernels' one-line compile notice goes to the supervisor (``("notice", text)``), which
    prints it from the parent: a terminal app there captures it instead of being drawn over.
    """
    for name in WARM_MODULES:
        with contextlib.suppress(Exception):  # a module that fails here fails again, reported, with its file
            importlib.import_module(name)
    with contextlib.suppress(Exception):  # compile / load the disk cache
        kernels = importlib.import_module("destill3d_tui.engine.extract.kernels")
        kernels.warm_up(lambda text: conn.send(("notice", text)))


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _run_one(func, task: tuple[str, Any, Any], temp_root: str) -> tuple[str, Any]:
    """Run one file in a fresh temp dir (the item's working dir), removed afterwards."""
    import shutil
    import tempfile

    path, options, provenance, *extra = task  # extra: the target's keywords (archive member, listing)
    workdir = tempfile.mkdtemp(prefix="item-", dir=temp_root)
    os.chdir(workdir)
    os.environ["TMPDIR"] = tempfile.tempdir = workdir
    try:
        result = func(path, options=options, provenance=provenance, **(extra[0] if extra else {}))
        return "ok", result.to_bytes("exact") if hasattr(result, "to_bytes") else result
    except MemoryError:
        return "error", ("IsolationError", "memory_limit", "ran out of memory under the worker's address-space cap")
    except Destill3DError as exc:
        return "error", (type(exc).__name__, exc.reason, str(exc)[:2000])
    except RecursionError:
        return "error", ("FormatError", "parse_error", "structure nested too deeply")
    except Exception as exc:  # the stage boundary: any library failure becomes a reason code
        return "error", ("ExtractionError", "internal_error", f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        os.chdir(temp_root)
        tempfile.tempdir = None
        shutil.rmtree(workdir, ignore_errors=True)


def _child_main(conn, target: str, memory_limit_mb: int, temp_root: str, nice: int = 0) -> None:
    """Worker loop: receive (path, options, provenance), send ("ok", bytes) or ("error", info)."""
    _child_setup(memory_limit_mb, temp_root, nice)
    func = _resolve(target)
    if target == DEFAULT_TARGET:  # other targets (tests, tools) bring their own imports
        _warm_up(conn)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply = _run_one(func, task, temp_root)
        except MemoryError:
            reply = ("error", ("IsolationError", "memory_limit", "ran out of memory"))
        conn.send(reply)


# ---------------------------------------------------------------- the supervisor side


class _Worker:
    """One child process and the pipe to it; replaced whenever it dies or is killed."""

    def __init__(self, ctx: Any, target: str, memory_limit_mb: int, temp_root: str, nice: int = 0) -> None:
        self.conn, child_conn = ctx.Pipe()
        with _ENV_LOCK, _thread_env():
            self.proc = ctx.Process(
                target=_child_main, args=(child_conn, target, memory_limit_mb, temp_root, nice), daemon=True
            )
            self.proc.start()
        child_conn.close()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> None:
        """The first message says the child imported its target; a child that dies here is an error.

        Notices before it (the kernels compiling on the first run) are printed on stderr.
        """
        deadline = time.monotonic() + timeout_s
        while not self.ready and self.conn.poll(max(0.0, deadline - time.monotonic())):
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                break
            if kind != "notice":
                self.ready = kind == "ready"
                break
            print(payload, file=sys.stderr, flush=True)
        if not self.ready:
            self.kill()
            raise ExtractionError(f"extraction worker failed to start (exit code {self.proc.exitcode})",
                                  reason="worker_failed")  # fmt: skip

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.send(None)
        self.proc.join(2)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


@contextlib.contextmanager
def _thread_env():
    """Spawned children inherit os.environ at start: one BLAS/OpenMP thread before numpy loads."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ExtractionSupervisor:
    """Run ``target(path, options=..., provenance=...)`` for many files in ``workers`` children.

    Parameters
    ----------
    workers : number of child processes (each holds one file at a time)
    timeout_s : wall-clock limit per file; the child is killed when it passes
    memory_limit_mb : address-space cap of each child (``RLIMIT_AS``); 0 = none
    nice : how far below this process the children run (``os.nice``; 0 = same priority)
    target : ``"module:function"`` run in the child; default ``engine.extract.extract_file``
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 120.0,
        memory_limit_mb: int = 4096,
        *,
        target: str = DEFAULT_TARGET,
        start_timeout_s: float = 120.0,
        nice: int = 0,
        temp_root: str | Path | None = None,
    ) -> None:
        from .. import locations

        self.workers = max(1, int(workers))
        self.timeout_s = float(timeout_s)
        self.memory_limit_mb = int(memory_limit_mb)
        self.nice = max(0, int(nice))
        self.target = target
        self.start_timeout_s = start_timeout_s
        self._own_temp_root = temp_root is None  # removed on close when the supervisor made it
        self.temp_root = str(
            temp_root or tempfile.mkdtemp(prefix="extract-", dir=locations.ensure_dir(locations.temp_root()))
        )
        self._ctx = multiprocessing.get_context("spawn")
        self._tasks: queue.Queue[_Task | None] = queue.Queue()
        self._closed = False
        self._abort = threading.Event()
        self._threads = [
            threading.Thread(target=self._slot, name=f"extract-slot-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ public

    def submit(self, key: Any, path: str | Path, options: Any = None, provenance: Any = None, *,
               member: str | None = None) -> Future:  # fmt: skip
        """Queue one file; the future gives a ``Snapshot`` or raises the file's error.

        ``member``: the model file inside the archive ``path`` to extract (default: the best one).
        """
        if self._closed:
            raise RuntimeError("ExtractionSupervisor is closed")
        future: Future = Future()
        # The child works in its own temp dir: a relative path means the caller's folder, so it
        # is made absolute here, in the caller's process (without following symlinks).
        call = {"member": member} if member is not None else {}
        self._tasks.put(_Task(key, os.path.abspath(path), options, provenance, future, call))
        return future

    def submit_listing(self, key: Any, path: str | Path) -> Future:
        """The model member names of the archive ``path`` (``list[str]``), read in a child.

        Listing decompresses a tar stream, so it runs under the same timeout and memory cap as
        extraction; a bomb or unsafe archive raises its ``ArchiveError`` from the future.
        """
        return self._submit_call(key, path, {"list_models": True})

    def _submit_call(self, key: Any, path: str | Path, call: dict[str, Any]) -> Future:
        if self._closed:
            raise RuntimeError("ExtractionSupervisor is closed")
        future: Future = Future()
        self._tasks.put(_Task(key, os.path.abspath(path), None, None, future, call))
        return future

    def close(self, cancel_pending: bool = True, *, kill: bool = False) -> None:
        """Stop the children; queued files not yet started are cancelled (or finished when not).

        ``kill`` also stops the files in progress at once (their futures fail with reason
        ``cancelled``): what Ctrl-C or an error in the caller wants.
        """
        if self._closed:
            return
        self._closed = True
        if kill:
            self._abort.set()
        if cancel_pending:
            self._cancel_queued()
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()
        if self._own_temp_root:
            shutil.rmtree(self.temp_root, ignore_errors=True)

    def __enter__(self) -> ExtractionSupervisor:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(kill=exc_type is not None)

    # ------------------------------------------------------------ slots

    def _cancel_queued(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                task.future.cancel()

    def _slot(self) -> None:
        """One thread per child: feed it files one by one, replace it when it dies."""
        worker: _Worker | None = None
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                if not task.future.set_running_or_notify_cancel():
                    continue
                worker = self._run(worker, task)
        finally:
            if worker is not None:
                worker.stop()

    def _run(self, worker: _Worker | None, task: _Task) -> _Worker | None:
        if worker is not None and not worker.proc.is_alive():
            worker.kill()
            worker = None
        try:
            if worker is None:
                worker = _Worker(self._ctx, self.target, self.memory_limit_mb, self.temp_root, self.nice)
                worker.wait_ready(self.start_timeout_s)
            outcome, worker = self._exchange(worker, task)
        except Destill3DError as exc:
            task.future.set_exception(exc)
            return None
        except BaseException as exc:  # never lose a future: the caller always gets an answer
            task.future.set_exception(ExtractionError(f"supervisor error: {exc}", reason="internal_error"))
            if worker is not None:
                worker.kill()
            return None
        self._settle(task, outcome)
        if worker is not None and outcome[0] == "error" and outcome[1][1] == "memory_limit":
            worker.kill()  # a process that hit its cap may be left half-broken: start a fresh one
            return None
        return worker

    def _exchange(self, worker: _Worker, task: _Task) -> tuple[tuple[str, Any], _Worker | None]:
        """Send the file, wait for the answer while watching the clock and the child's memory."""
        task.future.started_at = time.monotonic()  # type: ignore[attr-defined]  # per-file time, worker start excluded
        worker.conn.send((task.path, task.options, task.provenance, task.call) if task.call else
                         (task.path, task.options, task.provenance))  # fmt: skip
        deadline = time.monotonic() + self.timeout_s
        peak = 0
        while True:
            peak = max(peak, _vms(worker.proc.pid))
            if worker.conn.poll(POLL_S):
                try:
                    return worker.conn.recv(), worker
                except (EOFError, OSError):
                    return self._died(worker, task, peak), None
            if not worker.proc.is_alive() and not worker.conn.poll(0):
                return self._died(worker, task, peak), None
            if self._abort.is_set():
                worker.kill()
                return ("error", ("ExtractionError", "cancelled", "extraction cancelled")), None
            if time.monotonic() > deadline:
                worker.kill()
                message = f"no result within {self.timeout_s:g} s; worker killed"
                return ("error", ("IsolationError", "timeout", message)), None

    def _died(self, worker: _Worker, task: _Task, peak_vms: int) -> tuple[str, Any]:
        worker.proc.join(5)
        code = worker.proc.exitcode
        worker.kill()
        cap = self.memory_limit_mb * 1024 * 1024
        near_cap = cap > 0 and peak_vms >= NEAR_CAP * cap
        name = _signal_name(code)
        native_abort = code is not None and -code in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)
        if (near_cap and native_abort) or code == -signal.SIGKILL:
            reason, what = "memory_limit", f"worker died ({name}) at the {self.memory_limit_mb} MB memory cap"
        else:
            reason, what = "parser_crashed", f"the parser crashed ({name}) while reading {Path(task.path).name}"
        return "error", ("IsolationError", reason, what)

    @staticmethod
    def _settle(task: _Task, outcome: tuple[str, Any]) -> None:
        kind, payload = outcome
        if kind == "ok":
            from ..store.snapshot import Snapshot

            try:
                task.future.set_result(Snapshot.from_bytes(payload) if isinstance(payload, bytes) else payload)
            except Destill3DError as exc:
                task.future.set_exception(exc)
            return
        task.future.set_exception(rebuild_error(*payload))


def rebuild_error(cls_name: str, reason: str, message: str) -> Destill3DError:
    """The child's error as the same class with the same reason, in the parent."""
    cls = getattr(errors, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Destill3DError)):
        cls = ExtractionError
    try:
        return cls(message, reason=reason)
    except TypeError:
        return ExtractionError(message, reason=reason)


def _vms(pid: int) -> int:
    """Virtual memory size of ``pid`` in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _signal_name(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def extract_isolated(
    path: str | Path,
    options: Any = None,
    *,
    timeout_s: float,
    memory_limit_mb: int,
    provenance: Any = None,
    target: str = DEFAULT_TARGET,
) -> Any:
    """Extract one file in a supervised child; the Snapshot, or the file's error raised."""
    with ExtractionSupervisor(1, timeout_s, memory_limit_mb, target=target) as supervisor:
        return supervisor.submit(str(path), path, options, provenance).result()
