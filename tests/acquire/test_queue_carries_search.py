"""What an adapter learned at search time travels with the queue item (issue 13, finding 3).

The fake Smithsonian here answers ``q`` as the API documents it, free text over titles: a
package id finds nothing. Shipped default settings (rate limit, timeouts): only the loopback
fake's address is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.config import load_settings
from tests.fakes.smithsonian import FakeSmithsonian

PACKAGE = "5d8f0b2e-3c41-4a6f-9b7e-0c2d4e6f8a1b"  # the mandible package of the shared fixture


@pytest.fixture
def si(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmithsonian]:
    with FakeSmithsonian(free_text_only=True) as fake:
        monkeypatch.setenv("SMITHSONIAN_API_KEY", fake.api_key)
        yield fake


def engine(si: FakeSmithsonian, tmp_path: Path) -> Destill3D:
    settings = load_settings(overrides={
        "database.url": f"sqlite:///{tmp_path / 'd.db'}",
        "platforms.smithsonian.base_url": si.url,
        "extraction.target_points": 512,
        "classification.enabled": False,
    })  # fmt: skip
    return Destill3D(settings)


def test_smithsonian_search_result_is_queued_and_downloaded_without_a_new_search(
    si: FakeSmithsonian, tmp_path: Path
) -> None:
    d3d = engine(si, tmp_path)
    try:
        results = d3d.acquire.search_many("smithsonian", "mandible", 5)
        assert [m.source_id for m in results] == [PACKAGE]
        searches = len(si.server.hits("/api/v1.0/content/file/search"))
        ids = d3d.acquire.queue_results(results)
        assert d3d.acquire.refused == [] and len(ids) == 1  # was: refused, "no 3D package <uuid>"
        row = d3d.queue.get(ids[0])
        assert row.metadata["license"]["spdx"] == "CC0-1.0"  # from the Open Access record the search named
        assert row.metadata["files"][0]["name"] == "usnm_125345-150k-2048-medium.glb"

        summary = d3d.pipeline.run_until_empty()
        assert summary.stored == 1 and summary.failed == 0, d3d.queue.get(ids[0]).last_error
        assert len(si.server.hits("/api/v1.0/content/file/search")) == searches  # no search after the first
        snap = d3d.db.get(d3d.queue.get(ids[0]).snapshot_id)
        assert snap.provenance.license_spdx == "CC0-1.0" and snap.provenance.platform == "smithsonian"
        assert snap.provenance.original_filename == "usnm_125345-150k-2048-medium.glb"
    finally:
        d3d.close()
