"""The engine never imports Textual: every engine module, imported in a fresh interpreter."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import destill3d_tui.engine as engine_pkg

REPO = Path(__file__).resolve().parents[2]


def engine_modules() -> list[str]:
    names = [engine_pkg.__name__]
    for info in pkgutil.walk_packages(engine_pkg.__path__, prefix=engine_pkg.__name__ + "."):
        names.append(info.name)
    return sorted(names)


def test_walk_finds_the_engine_modules() -> None:
    names = engine_modules()
    assert "destill3d_tui.engine.events" in names and "destill3d_tui.engine.store.snapshot" in names
    assert len(names) > 10


def test_no_engine_module_loads_textual() -> None:
    script = (
        "import importlib, json, sys\n"
        f"names = {engine_modules()!r}\n"
        "failed = {}\n"
        "for name in names:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = repr(exc)\n"
        "loaded = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(json.dumps({'textual': loaded, 'failed': failed}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["textual"] == [], f"engine modules pulled in textual: {report['textual']}"
    # a module that cannot even be imported would hide a textual import: none may fail
    assert report["failed"] == {}, report["failed"]
