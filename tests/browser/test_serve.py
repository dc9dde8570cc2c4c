"""`destill3d-tui serve` in a real Chromium: screens, keys, the token gate, a clean SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import psutil
import pytest

from destill3d_tui.serve import COOKIE, TOKEN_ENV, choose_token, is_loopback, session_command, token_matches

from .conftest import serving, title_line, wait_for_screen

TOKEN = "browser-test-token-0123456789"
SCREENS = (("F3", "Queue board"), ("F4", "Snapshots"), ("F5", "Database"), ("F2", "Search"))


def http_status(url: str, cookie: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def websocket_status(url: str, cookie: str | None = None, origin: str | None = None) -> int:
    """The handshake's status: 101 when the server accepted the websocket.

    In a thread of its own: Playwright's sync API holds an event loop in this one.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _websocket_status(url, cookie, origin)).result()


async def _websocket_status(url: str, cookie: str | None, origin: str | None) -> int:
    headers = {"Origin": origin} if origin else {}
    cookies = {COOKIE: cookie} if cookie else {}
    async with aiohttp.ClientSession(cookies=cookies) as session:
        try:
            async with session.ws_connect(url, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_the_token_rule() -> None:
    assert choose_token("127.0.0.1", None) is None
    assert choose_token("::1", None) is None
    assert choose_token("localhost", None) is None
    generated = choose_token("0.0.0.0", None)
    assert generated and len(generated) >= 32 and generated != choose_token("0.0.0.0", None)
    assert choose_token("192.168.1.20", None) is not None
    assert choose_token("127.0.0.1", None, require=True) is not None
    assert choose_token("0.0.0.0", "mine") == "mine"
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org") and is_loopback("[::1]")
    assert token_matches("abc", "abc") and not token_matches("abc", "abd") and not token_matches("abc", None)


def test_the_server_process_does_not_load_textual() -> None:
    """The server only relays: each session's app imports Textual in its own process."""
    code = ("import sys, destill3d_tui.commands.serve, destill3d_tui.serve as s;"
            "s.build_web_app('true', s.ServeOptions()); assert 'textual' not in sys.modules, 'textual loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_serve_takes_the_database_before_or_after_its_name() -> None:
    from destill3d_tui.cli import build_parser
    from destill3d_tui.commands.serve import session_args

    parser = build_parser()
    assert parser.parse_args(["serve", "--db", "a.db"]).db == "a.db"
    assert parser.parse_args(["--db", "b.db", "serve", "--port", "9000"]).db == "b.db"
    args = parser.parse_args(["--set", "pipeline.workers=1", "serve"])
    line = session_command(session_args(args, "sqlite:////data/x y.db"))
    assert line.startswith("exec ") and "destill3d_tui.serve_session" in line
    assert "'sqlite:////data/x y.db'" in line and "pipeline.workers=1" in line


def test_the_app_in_chromium(seeded_db: Path, tmp_path: Path, browser, artefacts: Path) -> None:
    with serving(seeded_db, tmp_path, env={TOKEN_ENV: TOKEN}) as served:
        refused_without_the_token(served.url)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{served.url}/?token={TOKEN}")
        assert page.url == f"{served.url}/", "the token stays in the address bar"
        wait_for_screen(page, lambda t: "Search" in title_line(t), "the Search screen")
        page.focus(".xterm-helper-textarea")  # keys go to the terminal, as after a click
        for key, title in SCREENS:
            page.keyboard.press(key)
            wait_for_screen(page, lambda t, title=title: title in title_line(t), f"{key} -> {title}")
        text = open_the_teapot(page)
        assert len(title_line(text)) > 120, "the terminal takes the browser's width, not 80 columns"
        assert len(text.splitlines()) > 30, "the terminal takes the browser's height, not 24 rows"
        shot = artefacts / "snapshots-teapot.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        page.keyboard.press("1")
        # the teapot (wider than tall) drawn at the page's size: an 80x24 terminal has no room for 20 rows
        # or 70 columns of cloud; a frame of the snapshot shown before the teapot is not taken for it
        wait_for_screen(page, lambda t: cloud_extent(t)[0] >= 20 and cloud_extent(t)[1] >= 70,
                        "the teapot's point cloud at the page's size")
        page.screenshot(path=str(artefacts / "snapshots-teapot-cloud.png"))
        sessions = psutil.Process(served.proc.pid).children()
        assert len(sessions) == 1, "one app process for the one browser session"
        started = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(60) == 0, served.log.read_text(errors="replace")
        assert time.monotonic() - started < 30
        assert not [p for p in sessions if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        page.close()
    with sqlite3.connect(seeded_db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM snapshots").fetchone() == (4,)


def cloud_extent(text: str) -> tuple[int, int]:
    """(rows, columns) spanned by braille cells (the point cloud draws 2x4 dots a cell)."""
    rows, first, last = [], 10**6, -1
    for n, line in enumerate(text.splitlines()):
        cells = [i for i, ch in enumerate(line) if "\u2801" <= ch <= "\u28ff"]
        if cells:
            rows.append(n)
            first, last = min(first, cells[0]), max(last, cells[-1])
    return (rows[-1] - rows[0] + 1, last - first + 1) if rows else (0, 0)


def refused_without_the_token(url: str) -> None:
    """Page, static files and websocket: a bare 403 without the token, or with a wrong one."""
    for path, cookie in (("/", None), ("/?token=wrong", None), ("/", "wrong"), ("/static/js/textual.js", None)):
        status, body = http_status(url + path, cookie)
        assert status == 403, (path, cookie, status)
        assert TOKEN.encode() not in body and b"token" not in body.lower()
    status, _ = http_status(url + "/static/js/textual.js", TOKEN)
    assert status == 200
    ws = url.replace("http", "ws") + "/ws?width=80&height=24"
    assert websocket_status(ws) == 403
    assert websocket_status(ws, cookie="wrong") == 403
    assert websocket_status(ws, cookie=TOKEN, origin="http://evil.example") == 403


def open_the_teapot(page) -> str:
    """F4, third row down is the teapot; its predictions (vase 62 %, cup) show on the predictions tab.

    The list shows the top label too: the second one (cup) and the model's name are the tab's alone.
    """
    page.keyboard.press("F4")
    wait_for_screen(page, lambda t: "teapot" in t, "the snapshot list")
    for key in ("ArrowDown", "ArrowDown", "ArrowDown", "3"):
        page.keyboard.press(key)
    return wait_for_screen(page, lambda t: "vase" in t and "62" in t and "cup" in t and "pointnet_mn40" in t,
                           "the teapot's predictions")


def test_a_loopback_bind_without_a_token_refuses_other_host_names(seeded_db: Path, tmp_path: Path) -> None:
    """No token: only loopback Host names are served (a rebinding DNS name gets a 403)."""
    with serving(seeded_db, tmp_path) as served:
        assert http_status(served.url + "/")[0] == 200
        request = urllib.request.Request(served.url + "/", headers={"Host": "attacker.example:80"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
