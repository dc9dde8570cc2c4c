"""The layers of ARCHITECTURE.md, read off the real import graph (grimp, as import-linter reads it).

grimp sees every import statement, those inside functions and under ``TYPE_CHECKING`` too, so
each check here would have failed on the code before issue 17, where these cycles hid behind
deferred imports. ``test_every_contract_is_kept`` runs the contracts of ``pyproject.toml``
exactly as ``make test`` does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = "destill3d_tui.engine"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("destill3d_tui", cache_dir=None)


def _chain(graph: grimp.ImportGraph, importer: str, imported: str) -> tuple[str, ...] | None:
    """The shortest import chain from ``importer`` to ``imported`` (packages include their modules)."""
    return graph.find_shortest_chain(importer=importer, imported=imported, as_packages=True)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        # the store keeps its own compiled decoders; the kernel decorator is in the core
        (f"{ENGINE}.store", f"{ENGINE}.extract"),
        # the local adapter scans folders itself; the queue builds its entries from that scan
        (f"{ENGINE}.acquire", f"{ENGINE}.queue"),
        # onnxruntime sessions live in classify.runtime, which both use
        (f"{ENGINE}.classify.registry", f"{ENGINE}.classify.inference"),
        # safe XML/JSON reading and failure wording live in extract.untrusted
        (f"{ENGINE}.extract.references", f"{ENGINE}.extract.loaders"),
        (f"{ENGINE}.extract.loaders", f"{ENGINE}.extract.references"),
        # the caps and MAX_COORDINATE live in loaders.limits
        (f"{ENGINE}.extract.loaders", f"{ENGINE}.extract.load"),
        (f"{ENGINE}.extract.loaders.gltfcheck", f"{ENGINE}.extract.loaders.guards"),
        # the migrations name the store they upgrade by shape (a Protocol)
        (f"{ENGINE}.store.migrations", f"{ENGINE}.store.db"),
    ],
)
def test_no_import_path(graph: grimp.ImportGraph, importer: str, imported: str) -> None:
    assert _chain(graph, importer, imported) is None


@pytest.mark.parametrize(
    "stage", [f"{ENGINE}.acquire", f"{ENGINE}.extract", f"{ENGINE}.classify", f"{ENGINE}.store"]
)
@pytest.mark.parametrize(
    "above", [f"{ENGINE}.api", f"{ENGINE}.headless", f"{ENGINE}.services", f"{ENGINE}.pipeline", f"{ENGINE}.queue"]
)
def test_stages_do_not_reach_up(graph: grimp.ImportGraph, stage: str, above: str) -> None:
    assert above in graph.modules
    assert _chain(graph, stage, above) is None


@pytest.mark.parametrize("stage", [f"{ENGINE}.extract", f"{ENGINE}.classify", f"{ENGINE}.store"])
def test_nothing_below_acquisition_imports_it(graph: grimp.ImportGraph, stage: str) -> None:
    assert _chain(graph, stage, f"{ENGINE}.acquire") is None


def test_the_engine_imports_no_ui(graph: grimp.ImportGraph) -> None:
    ui = [m for m in graph.find_children("destill3d_tui") if m != ENGINE]
    assert ui, "the UI modules were not found"
    for module in ui:
        assert _chain(graph, ENGINE, module) is None, module


def test_every_contract_is_kept() -> None:
    """The contracts in pyproject.toml (layers, engine without textual, no cycles) all hold."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
