"""Every adapter downloads through a redirect chain to a CDN host at its SHIPPED rate budget.

The first hop goes to the platform (its API budget: Thingiverse, Sketchfab, Cults3D and
Smithsonian allow 1 request/s), the file answer is a ``302`` to another loopback host, which
redirects once more on its own host. A hop must never wait on a slot its own exchange holds, and
the CDN hops are paced by the CDN's budget, not the API's: each download finishes in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from destill3d_tui.engine.acquire.rate import rate_status
from destill3d_tui.engine.acquire.registry import get_adapter
from tests.acquire.conftest import platform_settings
from tests.fakes.cdn import RedirectingCDN
from tests.fakes.cults3d import FakeCults3D
from tests.fakes.github import REPO, FakeGitHub
from tests.fakes.myminifactory import FakeMyMiniFactory
from tests.fakes.sketchfab import FakeSketchfab
from tests.fakes.smithsonian import FakeSmithsonian
from tests.fakes.thingiverse import FakeThingiverse

FEW_SECONDS = 6.0  # the slowest chain: two API requests at 1/s (GitHub: 1 per 2 s) plus three CDN hops
SKETCHFAB_UID = "8d3f0c5e2a1b4c7d9e6f0a1b2c3d4e5f"
SMITHSONIAN_PACKAGE = "5d8f0b2e-3c41-4a6f-9b7e-0c2d4e6f8a1b"


@pytest.fixture
def cdn() -> Iterator[RedirectingCDN]:
    with RedirectingCDN() as server:
        yield server


def timed_download(adapter: Any, source_id: str, target: Path, file_id: str | None = None) -> tuple[Any, float]:
    started = time.monotonic()
    result = asyncio.run(adapter.download(source_id, target, file_id))
    return result, time.monotonic() - started


def assert_through_cdn(cdn: RedirectingCDN, elapsed: float) -> None:
    assert len(cdn.server.hits("/signed/")) == 1 and len(cdn.server.hits("/blob/")) == 1
    assert elapsed < FEW_SECONDS, f"download through the CDN took {elapsed:.1f} s"


def test_thingiverse_download_redirects_at_default_budget(cdn: RedirectingCDN, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeThingiverse(n_things=2) as fake:
        monkeypatch.setenv("THINGIVERSE_API_KEY", fake.token)
        cdn.front(fake.cdn, "/cdn/")  # API 302 -> thingiverse CDN 302 -> CDN 302 -> bytes
        adapter = get_adapter("thingiverse", platform_settings("thingiverse", fake.url, fake.cdn.hostport,
                                                               cdn.hostport))
        result, elapsed = timed_download(adapter, "7000000", tmp_path, "90000000")
        assert result.primary.read_bytes() == fake.blobs[90_000_000]
        assert_through_cdn(cdn, elapsed)
        assert rate_status()["thingiverse"].capacity == 1  # the rate panel shows the API's budget, not a CDN's


def test_sketchfab_download_redirects_at_default_budget(cdn: RedirectingCDN, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSketchfab(n_extra=0) as fake:
        monkeypatch.setenv("SKETCHFAB_API_KEY", fake.token)
        cdn.front(fake.s3, "/archives/")
        adapter = get_adapter("sketchfab", platform_settings("sketchfab", fake.url, fake.s3.hostport, cdn.hostport))
        result, elapsed = timed_download(adapter, SKETCHFAB_UID, tmp_path)
        assert result.primary.read_bytes() == fake.blobs[f"{SKETCHFAB_UID}/glb"]
        assert_through_cdn(cdn, elapsed)


def test_github_download_redirects_at_default_budget(cdn: RedirectingCDN, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGitHub() as fake:
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        cdn.front(fake.raw, "/raw/")
        adapter = get_adapter("github", platform_settings("github", fake.url, fake.raw.hostport, cdn.hostport))
        result, elapsed = timed_download(adapter, REPO, tmp_path, "cad/stl/finger_left.stl")
        assert result.primary.read_bytes() == fake.files["cad/stl/finger_left.stl"]
        assert_through_cdn(cdn, elapsed)


def test_myminifactory_download_redirects_at_default_budget(cdn: RedirectingCDN, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeMyMiniFactory(n_extra=0) as fake:
        monkeypatch.setenv("MYMINIFACTORY_API_KEY", fake.key)
        monkeypatch.setenv("MYMINIFACTORY_OAUTH_TOKEN", fake.oauth)
        cdn.front(fake.server, "/download/")
        adapter = get_adapter("myminifactory", platform_settings("myminifactory", fake.url, cdn.hostport))
        result, elapsed = timed_download(adapter, "181904", tmp_path)
        assert result.primary.read_bytes() in fake.blobs.values()
        assert_through_cdn(cdn, elapsed)


def test_cults3d_download_redirects_at_default_budget(cdn: RedirectingCDN, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCults3D() as fake:
        monkeypatch.setenv("CULTS3D_USERNAME", fake.user)
        monkeypatch.setenv("CULTS3D_API_KEY", fake.key)
        fake.give_file_urls = True
        cdn.front(fake.server, "/files/")
        adapter = get_adapter("cults3d", platform_settings("cults3d", fake.url, cdn.hostport))
        result, elapsed = timed_download(adapter, "low-poly-planter-2", tmp_path)
        assert result.primary.read_bytes() == fake.blob
        assert_through_cdn(cdn, elapsed)


def test_smithsonian_download_redirects_at_default_budget(cdn: RedirectingCDN, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSmithsonian() as fake:
        monkeypatch.setenv("SMITHSONIAN_API_KEY", fake.api_key)
        cdn.front(fake.server, "/content/document/")
        adapter = get_adapter("smithsonian", platform_settings("smithsonian", fake.url, cdn.hostport))
        result, elapsed = timed_download(adapter, SMITHSONIAN_PACKAGE, tmp_path)
        assert result.primary.read_bytes() == fake.blobs[result.primary.name]
        assert_through_cdn(cdn, elapsed)
