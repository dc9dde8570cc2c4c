"""How fast the terminal app answers a key with a big database and a busy queue (issue 15).

    .venv/bin/python bench/tui.py                    # 100,000 snapshots, 100,000 queued, 2 workers
    .venv/bin/python bench/tui.py --n 20000          # quicker
    git worktree add /tmp/old <commit>               # the code before, measured the same way:
    .venv/bin/python bench/tui.py --code /tmp/old    # imports destill3d_tui from that checkout

The database is built fast: one real snapshot (the corpus teapot) goes in through
``insert_snapshot``, then one SQL statement copies its row ``n - 1`` times with varied ids,
titles, labels, confidences, platforms and formats (the blob is shared: the screens decode only
the snapshot they open). The queue gets ``n`` local items (copies of one small file, so the
running pipeline turns them into stored duplicates and emits events all the time).

The app runs under Textual's Pilot at 100x30 with the pipeline running; the first visits are
timed once the app has built the other modes off-screen (it prints when that was). A key's time runs from
the key event handed to the app (as the terminal driver hands it: Pilot's ``press`` waits for
the process to look idle, which it never does with workers busy, ~4 s a key) to the stamp the
screen sets after the refresh that shows what the key asked for (``Settles.settled``: the next
page's rows, the opened snapshot, the tab, the export count). Per key: median and p95 over
``--repeat`` presses; ``uptime``'s load is printed with the figures (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
LABELS = ("chair", "table", "vase", "lamp", "airplane", "car", "guitar", "bottle", "cup", "sofa")
PLATFORMS = ("thingiverse", "sketchfab", "local", "cults3d")
FORMATS = ("STL", "OBJ", "PLY", "STEP")
GOAL_MS = 100.0
IGNORED_GROUPS = ["lifecycle", "memory"]
"""Worker groups that are not the screen's answer to a key (the pipeline's start and drain)."""


def build_database(d3d: Any, n: int) -> None:
    """One real snapshot, then ``n - 1`` SQL copies of its row with varied columns."""
    from destill3d_tui.engine.extract import extract_file
    from destill3d_tui.engine.store.service import insert_snapshot

    snap = extract_file(CORPUS / "stl" / "teapot.stl", points=512, seed=0)
    snap.model_id, snap.provenance.title = "bench:0", "teapot 0"
    with d3d.store.atomic():
        insert_snapshot(d3d.store, snap, snap.to_bytes())
    columns = [row[1] for row in d3d.store.execute("PRAGMA table_info(snapshots)").fetchall()]
    varied = {
        "snapshot_id": "printf('%08x-0000-4000-8000-%012x', i, i)",
        "model_id": "'bench:' || i",
        "title": f"(CASE i % {len(LABELS)} " + " ".join(f"WHEN {k} THEN '{v}'" for k, v in enumerate(LABELS))
                 + " END) || ' ' || i",
        "label": f"(CASE (i * 7) % {len(LABELS)} " + " ".join(f"WHEN {k} THEN '{v}'" for k, v in enumerate(LABELS))
                 + " END)",
        "confidence": "0.4 + (i % 60) / 100.0",
        "platform": f"(CASE i % {len(PLATFORMS)} "
                    + " ".join(f"WHEN {k} THEN '{v}'" for k, v in enumerate(PLATFORMS)) + " END)",
        "original_format": f"(CASE i % {len(FORMATS)} "
                           + " ".join(f"WHEN {k} THEN '{v}'" for k, v in enumerate(FORMATS)) + " END)",
        "original_file_hash": "printf('%064x', i)",
        "processed_at": "datetime('2026-01-01', '+' || i || ' seconds')",
    }
    select = ", ".join(varied.get(c, c) for c in columns)
    with d3d.store.atomic():
        d3d.store.execute(
            f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n - 1}) "
            f"INSERT INTO snapshots ({', '.join(columns)}) SELECT {select} FROM seq, "
            f"(SELECT * FROM snapshots WHERE model_id = 'bench:0')")
    d3d.store.execute("ANALYZE")


def build_queue(d3d: Any, n: int, folder: Path) -> None:
    """``n`` local items, each a copy of one small model file (the pipeline stores them as duplicates)."""
    from destill3d_tui.engine.queue import QueueEntry

    source = folder / "box.obj"
    shutil.copy(CORPUS / "obj" / "box.obj", source)
    # the local adapter reads the file its source id names; distinct model ids keep n items
    entries = [QueueEntry(model_id=f"local:bench-{i}", platform="local", source_url=source.as_uri(),
                          source_id=str(source), metadata={"title": f"queued box {i}"}) for i in range(n)]
    d3d.queue.add_entries(entries)


async def settle(app: Any, pilot: Any, timeout: float = 120.0) -> None:
    """Between measurements (not timed): until the screen's own workers have finished, then a refresh."""
    from textual.worker import WorkerState

    deadline = time.monotonic() + timeout
    await asyncio.sleep(0.05)
    while any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) and w.group not in IGNORED_GROUPS
              for w in app.workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


def send_key(app: Any, key: str) -> None:
    """The key as the terminal driver would deliver it: no Pilot wait-for-idle (it never sees idle under load)."""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)


def stamp_of(node: Any, what: str) -> tuple[float, Any] | None:
    return getattr(node, "stamps", {}).get(what)


async def timed(app: Any, keys: tuple[str, ...], what: str, token: Callable[[], Any] | None = None,
                timeout: float = 60.0) -> float:
    """Ms from the key press to the stamp ``what`` (with ``token()`` when given) on the screen shown then.

    The screen stamps ``what`` after the refresh that put it on the terminal (``Settles.settled``)."""
    began = time.perf_counter()
    for key in keys:
        send_key(app, key)
    return await stamped(app, keys, began, what, token, timeout)


async def stamped(app: Any, keys: tuple[str, ...], began: float, what: str, token: Callable[[], Any] | None = None,
                  timeout: float = 60.0) -> float:
    """Ms from ``began`` to the stamp ``what`` on the screen shown now."""
    deadline = began + timeout
    while True:
        stamp = stamp_of(app.screen, what)
        if stamp is not None and stamp[0] > began and (token is None or stamp[1] == token()):
            return (stamp[0] - began) * 1000
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{keys}: no {what!r} stamp on {type(app.screen).__name__} within {timeout} s "
                               f"(stamps {getattr(app.screen, 'stamps', {})}, wanted {token() if token else None}, "
                               f"focused {app.screen.focused})")
        await asyncio.sleep(0.001)


def focus(app: Any, selector: str) -> None:
    app.screen.query_one(selector).focus()


async def measure(app: Any, pilot: Any, repeat: int) -> dict[str, list[float]]:
    """Per key: ``repeat`` times in ms, each from a screen that had settled."""
    times: dict[str, list[float]] = {}

    def record(name: str, ms: float) -> None:
        times.setdefault(name, []).append(ms)
        print(f"  {name}: {ms:.1f} ms", flush=True)  # a run cut short still reports

    async def key(name: str, keys: tuple[str, ...], what: str, token: Callable[[], Any] | None = None,
                  before: Callable[[], Any] | None = None, after: tuple[str, ...] = (),
                  then: tuple[str, str] | None = None) -> None:
        """``then``: (name, stamp) also timed from the same press (what arrives after the screen is up)."""
        for _ in range(repeat):
            if before is not None:
                result = before()
                if result is not None:
                    await result
                await settle(app, pilot)
            began = time.perf_counter()
            record(name, await timed(app, keys, what, token))
            if then is not None:
                record(then[0], await stamped(app, keys, began, then[1]))
            for restore in after:
                send_key(app, restore)
            await settle(app, pilot)

    async def go(mode_key: str) -> None:
        send_key(app, mode_key)
        await settle(app, pilot)

    first = {"f3": "page", "f4": "list", "f5": "rows", "f2": "resumed"}
    for mode_key, what in first.items():  # first visits, then switches
        record(f"{mode_key} first visit", await timed(app, (mode_key,), what))
        await settle(app, pilot)
    for mode_key, other in (("f2", "f5"), ("f3", "f2"), ("f4", "f3"), ("f5", "f4")):
        await key(mode_key, (mode_key,), first[mode_key], before=lambda other=other: go(other))
    await go("f3")
    await key("f3 tab 1-4", ("2",), "tab", lambda: "tab-active", before=lambda: go("1"))
    await key("f3 page ]", ("right_square_bracket",), "page", lambda: 1, before=lambda: focus(app, "#queue-table"),
              after=("left_square_bracket",))
    await go("f4")
    await key("f4 tab 2", ("2",), "tab", lambda: "tab-features", before=lambda: go("1"))
    # no token: the copied rows share the teapot's blob, so every snapshot opened says it is the teapot
    await key("f4 open snapshot (down)", ("down",), "snapshot", before=lambda: focus(app, "#snap-list"))
    await key("f4 page ]", ("right_square_bracket",), "list", lambda: 1, before=lambda: focus(app, "#snap-list"),
              after=("left_square_bracket",))
    await go("f5")
    await key("f5 page ]", ("right_square_bracket",), "rows", lambda: 1, before=lambda: focus(app, "#db-results"),
              after=("left_square_bracket",))
    await key("f5 tab stats", ("2",), "stats", before=lambda: focus(app, "#db-results"), after=("1",))
    # the dialog is up (fields, focus on the path) at "resumed"; its count is the engine's export_plan
    await key("f5 export dialog", ("e",), "resumed", before=lambda: focus(app, "#db-results"), after=("escape",),
              then=("f5 export: count shown", "plan"))
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def open_engine(args: argparse.Namespace) -> tuple[Any, Path]:
    """A fresh engine on a temporary database holding ``n`` snapshots and ``n`` queued items."""
    from destill3d_tui.engine.api import Destill3D
    from destill3d_tui.engine.config import load_settings

    work = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    os.environ["DESTILL3D_HOME"] = str(work / "home")
    settings = load_settings(None, {"database.url": f"sqlite:///{work / 'bench.db'}",
                                    "classification.enabled": False, "extraction.target_points": 256,
                                    "pipeline.workers": max(args.workers, 1)})
    d3d = Destill3D(settings=settings)
    began = time.perf_counter()
    build_database(d3d, args.n)
    build_queue(d3d, args.n, work)
    print(f"built {args.n:,} snapshots and {args.n:,} queue items in {time.perf_counter() - began:.1f} s", flush=True)
    return d3d, work


async def run(d3d: Any, args: argparse.Namespace) -> dict[str, list[float]]:
    from destill3d_tui.app import Destill3DApp

    app = Destill3DApp(d3d, start_pipeline=args.workers > 0, cursor_blink=False)
    started = time.perf_counter()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await settle(app, pilot)
        # the other modes are built off-screen once the first is up (a curator reads it meanwhile);
        # an older checkout (--code) has no such step and builds each on its first visit
        while not getattr(app, "modes_built", True) and time.perf_counter() - started < 30:
            await asyncio.sleep(0.05)
        if hasattr(app, "modes_built"):
            print(f"every mode built {time.perf_counter() - started:.1f} s after the app started", flush=True)
        await settle(app, pilot)
        try:
            times = await measure(app, pilot, args.repeat)
        finally:
            print(f"queue by stage after measuring: {d3d.queue.counts()}", flush=True)
        app.workers.cancel_all()
    return times


def report(times: dict[str, list[float]], label: str) -> None:
    print(f"\n{label}: ms from key to a settled screen (goal p95 < {GOAL_MS:.0f} ms)")
    print(f"{'key':<26} {'median':>8} {'p95':>8} {'n':>4}")
    for name, values in times.items():
        flag = "" if p95(values) < GOAL_MS else "  over"
        print(f"{name:<26} {statistics.median(values):>8.1f} {p95(values):>8.1f} {len(values):>4}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="snapshots in the database and items in the queue")
    parser.add_argument("--repeat", type=int, default=15, help="presses per key")
    parser.add_argument("--workers", type=int, default=2, help="extraction workers running meanwhile (0: none)")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose destill3d_tui is measured")
    parser.add_argument("--ignore", action="append", default=[],
                        help="a worker group not waited for (the old F4 searched similar models on every row)")
    args = parser.parse_args()
    IGNORED_GROUPS.extend(args.ignore)
    sys.path.insert(0, str(args.code.resolve()))
    import destill3d_tui

    where = Path(destill3d_tui.__file__).resolve().parents[1]
    d3d, work = open_engine(args)
    try:
        times = asyncio.run(run(d3d, args))
    finally:
        d3d.close()  # drains the pipeline; outside the app's event loop (the engine runs its own)
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    report(times, f"{where} · n={args.n:,} · workers={args.workers} · load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
                  f" on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
