"""Two browser sessions on one database while a headless run stores items: both see the new count."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil

from destill3d_tui.engine.api import Destill3D

from .conftest import cli, light_settings, serving, title_line, wait_for_screen

QUEUED = ("off/Cube.off", "obj/box.obj")
SEEDED = 4


def queue_files(db: Path, corpus_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    paths = []
    for name in QUEUED:
        target = folder / Path(name).name
        target.write_bytes((corpus_dir / name).read_bytes())
        paths.append(target)
    d3d = Destill3D(settings=light_settings(db))
    try:
        assert len(d3d.queue.add_paths(paths)) == len(QUEUED)
    finally:
        d3d.close()


def open_database_screen(browser, url: str):  # type: ignore[no-untyped-def]
    """A page of its own (own browser context: own cookies, own session) on the Database screen."""
    page = browser.new_context(viewport={"width": 1200, "height": 700}).new_page()
    page.goto(url + "/")
    return page


def show_count(page, count: int) -> str:  # type: ignore[no-untyped-def]
    """Enter the Database screen again (it queries on entry) until it shows ``count`` matches.

    The page is brought to the front first: only the front page gets key events, and xterm.js
    draws on animation frames, which a background page does not get.
    """
    page.bring_to_front()
    page.focus(".xterm-helper-textarea")
    deadline = time.monotonic() + 45

    def shows(text: str) -> bool:
        return "Database" in title_line(text) and f"{count:,} match" in text

    while True:
        page.keyboard.press("F2")
        page.keyboard.press("F5")
        try:
            return wait_for_screen(page, shows, f"{count} matches on the Database screen", timeout=3)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_two_sessions_see_what_a_headless_run_stores(seeded_db: Path, tmp_path: Path, corpus_dir: Path,
                                                     browser) -> None:
    queue_files(seeded_db, corpus_dir, tmp_path)
    with serving(seeded_db, tmp_path) as served:
        pages = [open_database_screen(browser, served.url) for _ in range(2)]
        pages[0].bring_to_front()
        wait_for_screen(pages[0], lambda t: "Search" in title_line(t), "the Search screen")
        show_count(pages[0], SEEDED)
        # the run stores while the second page starts and browses
        run = subprocess.Popen(cli("--db", str(seeded_db), "--headless"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        try:
            pages[1].bring_to_front()
            wait_for_screen(pages[1], lambda t: "Search" in title_line(t), "the Search screen")
            assert len(psutil.Process(served.proc.pid).children()) == 2, "one app process per session"
            _, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, err.decode(errors="replace")
        for page in pages:
            show_count(page, SEEDED + len(QUEUED))
