"""`destill3d-tui serve` as a real subprocess, driven by the distribution's Chromium through Playwright.

Chromium runs with WebGL off, so xterm.js falls back to its DOM renderer and the page's text
(``.xterm-rows``) can be read; what the app draws is the same. ``make test`` installs Chromium
(scripts/ensure_chromium.sh); Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from destill3d_tui.engine.api import Destill3D
from destill3d_tui.engine.config import Settings, load_settings
from tests.tui.conftest import seed_snapshots

CHROMIUM = Path(os.environ.get("DESTILL3D_CHROMIUM", "/usr/bin/chromium"))
LIGHT_SETTINGS = ("extraction.target_points=256", "classification.enabled=false", "pipeline.workers=1")
"""The sessions' and the headless run's settings: small clouds, no classifier, one worker (2 cores)."""
START_S, DRAW_S = 20.0, 30.0
ARTEFACTS_DIR = os.environ.get("D3D_TEST_ARTEFACTS")  # not DESTILL3D_*: those are settings


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    """A SQLite database holding the four seed snapshots (teapot, benchy, rabbit, cube), built once."""
    path = tmp_path_factory.mktemp("browser-seed") / "seed.db"
    d3d = Destill3D(settings=light_settings(path))
    try:
        seed_snapshots(d3d, corpus_dir)
    finally:
        d3d.close()
    return path


@pytest.fixture
def seeded_db(seeded_template: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded database (closed cleanly, so the file alone is the database)."""
    path = tmp_path / "served.db"
    shutil.copyfile(seeded_template, path)
    return path


def light_settings(db: Path) -> Settings:
    return load_settings(None, {"database.url": f"sqlite:///{db}",
                                **dict(item.split("=", 1) for item in LIGHT_SETTINGS)})


def cli(*args: str) -> list[str]:
    sets = [x for item in LIGHT_SETTINGS for x in ("--set", item)]
    return [sys.executable, "-m", "destill3d_tui", *sets, *args]


@contextmanager
def serving(db: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """``destill3d-tui --db DB serve`` on a free loopback port until the block ends (then SIGTERM)."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(cli("--db", str(db), "serve", "--port", str(port), *extra),
                                stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        wait_for_port(port, proc, log)
        yield Served(proc, f"http://127.0.0.1:{port}", log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + START_S
    while time.monotonic() < end:
        assert proc.poll() is None, f"serve exited early:\n{log.read_text(errors='replace')}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"serve did not listen within {START_S} s:\n{log.read_text(errors='replace')}")


# Module scope: Playwright's sync API keeps an asyncio loop marked running on this thread while it
# lives, and every later test that closes a pipeline loop from the main thread would see it.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: run scripts/ensure_chromium.sh (make test does)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM),
                                      args=["--no-sandbox", "--disable-webgl", "--disable-3d-apis"])
        yield chromium
        chromium.close()


@pytest.fixture
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots, never committed: in $D3D_TEST_ARTEFACTS when set (CI keeps that folder),
    else in pytest's temp dir (it keeps the last three runs)."""
    folder = ARTEFACTS_DIR
    if not folder:
        return tmp_path_factory.mktemp("browser-artefacts")
    path = Path(folder) / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screen_text(page: object) -> str:
    return str(page.evaluate(  # type: ignore[attr-defined]
        "() => { const r = document.querySelector('.xterm-rows'); return r ? r.innerText : '' }"))


def wait_for_screen(page: object, accept: Callable[[str], bool], what: str, timeout: float = DRAW_S) -> str:
    """Poll the drawn terminal text until ``accept`` holds; fail with what was on screen."""
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = screen_text(page)
        if accept(text):
            return text
        page.wait_for_timeout(100)  # type: ignore[attr-defined]
    raise AssertionError(f"{what} not shown within {timeout} s; the page shows:\n{text}")


def title_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
