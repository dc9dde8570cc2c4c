"""The stages never reach up to the services or the facade (issue 17), deferred imports included.

grimp reads every ``import`` in the source, also those inside functions and under
``TYPE_CHECKING``, which is where such a dependency used to hide (``acquire/service.py`` held the
facade through a ``TYPE_CHECKING`` import of ``engine.api``).
"""

from __future__ import annotations

import grimp
import pytest

STAGES = ("acquire", "extract", "classify", "store")
ABOVE_THE_STAGES = ("destill3d_tui.engine.api", "destill3d_tui.engine.headless", "destill3d_tui.engine.services")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("destill3d_tui", cache_dir=None)


def test_no_stage_imports_a_service_or_the_facade(graph: grimp.ImportGraph) -> None:
    offending = sorted(
        (importer, imported)
        for stage in STAGES
        for importer in graph.find_descendants(f"destill3d_tui.engine.{stage}") | {f"destill3d_tui.engine.{stage}"}
        for imported in graph.find_modules_directly_imported_by(importer)
        if any(_under(imported, above) for above in ABOVE_THE_STAGES)
    )
    assert offending == []
    assert graph.find_modules_that_directly_import("destill3d_tui.engine.services.dataset")  # the graph saw them


def test_services_do_not_hold_the_facade(graph: grimp.ImportGraph) -> None:
    services = graph.find_descendants("destill3d_tui.engine.services")
    assert {"destill3d_tui.engine.services.acquire", "destill3d_tui.engine.services.classify",
            "destill3d_tui.engine.services.dataset"} <= services  # fmt: skip
    facade = "destill3d_tui.engine.api"
    assert [s for s in sorted(services) if facade in graph.find_modules_directly_imported_by(s)] == []
