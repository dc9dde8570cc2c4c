"""Sketchfab adapter against a fake Data API (cursor paging, licences) and a fake S3 with expiring links."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire.base import SearchFilters
from destill3d_tui.engine.acquire.platforms.sketchfab import SketchfabAdapter
from destill3d_tui.engine.acquire.registry import get_adapter
from destill3d_tui.engine.errors import DownloadError, PlatformError
from tests.acquire.conftest import platform_settings
from tests.fakes.sketchfab import FakeSketchfab

UID = "8d3f0c5e2a1b4c7d9e6f0a1b2c3d4e5f"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSketchfab]:
    with FakeSketchfab(n_extra=30) as server:
        monkeypatch.setenv("SKETCHFAB_API_KEY", server.token)
        yield server


def adapter(fake: FakeSketchfab) -> SketchfabAdapter:
    made = get_adapter("sketchfab", platform_settings("sketchfab", fake.url, fake.s3.hostport))
    assert isinstance(made, SketchfabAdapter)
    return made


def test_cursor_paging_follows_next_urls(fake: FakeSketchfab) -> None:
    skfb = adapter(fake)
    seen: list[str] = []
    page: object = 1
    pages = 0
    while page is not None:
        result = asyncio.run(skfb.search("chair", SearchFilters(per_page=50), page))
        seen += [m.source_id for m in result.results]
        page = result.next_page
        pages += 1
    assert len(seen) == len(set(seen)) == 31  # "Old Wooden Chair" + 30 variants
    assert pages == 2  # count is clamped to 24
    assert fake.api.hits("/v3/search")[0].query["count"] == "24"
    assert fake.api.hits("/v3/search")[1].query["cursor"] == "24"


def test_licence_filter_uses_slugs(fake: FakeSketchfab) -> None:
    result = asyncio.run(adapter(fake).search("", SearchFilters(per_page=24, extra={"license_spdx": "CC0-1.0"})))
    assert result.results and all(m.license.spdx == "CC0-1.0" for m in result.results)
    assert fake.api.hits("/v3/search")[0].query["licenses"] == "cc0"


def test_metadata(fake: FakeSketchfab) -> None:
    meta = asyncio.run(adapter(fake).get_metadata(UID))
    assert meta.title == "Old Wooden Chair" and meta.author == "northwood3d"
    assert meta.license.spdx == "CC-BY-4.0" and meta.license.raw == "CC Attribution"
    assert [f.file_id for f in meta.files] == ["glb", "gltf", "source"]
    with pytest.raises(PlatformError) as info:
        asyncio.run(adapter(fake).get_metadata("0" * 32))
    assert info.value.reason == "not_found"


def test_download_glb_without_auth_on_s3(fake: FakeSketchfab, tmp_path: Path) -> None:
    result = asyncio.run(adapter(fake).download(UID, tmp_path))
    assert result.primary == tmp_path / f"{UID}.glb"
    assert result.sha256 == hashlib.sha256(fake.blobs[f"{UID}/glb"]).hexdigest()
    assert fake.api.hits(f"/v3/models/{UID}/download")[0].headers["authorization"] == f"Token {fake.token}"
    assert "authorization" not in fake.s3.hits()[0].headers


def test_download_gltf_zip_is_kept_for_the_isolated_worker(fake: FakeSketchfab, tmp_path: Path) -> None:
    result = asyncio.run(adapter(fake).download(UID, tmp_path, "gltf"))
    assert result.primary.suffix == ".zip" and result.files == [result.primary]
    assert [p.name for p in tmp_path.iterdir()] == [result.primary.name]  # unpacked by extraction, not here


def test_expired_link_is_requested_again(fake: FakeSketchfab, tmp_path: Path) -> None:
    fake.expire_next_links = 1
    result = asyncio.run(adapter(fake).download(UID, tmp_path))
    assert result.primary.exists()
    assert len(fake.api.hits(f"/v3/models/{UID}/download")) == 2
    assert [r.at for r in fake.s3.hits()] and len(fake.s3.hits()) == 2


def test_links_expiring_twice_is_expired_url(fake: FakeSketchfab, tmp_path: Path) -> None:
    fake.expire_next_links = 2
    with pytest.raises(DownloadError) as info:
        asyncio.run(adapter(fake).download(UID, tmp_path / "item"))
    assert info.value.reason == "expired_url"
    assert not (tmp_path / "item").exists() or not any((tmp_path / "item").iterdir())


def test_download_needs_a_user_credential(fake: FakeSketchfab, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.delenv("SKETCHFAB_API_KEY")
    skfb = adapter(fake)
    assert asyncio.run(skfb.search("chair", SearchFilters())).results  # search is anonymous
    with pytest.raises(PlatformError) as info:
        asyncio.run(skfb.download(UID, tmp_path))
    assert info.value.reason == "auth_failed"


@pytest.mark.parametrize(
    ("url", "uid"),
    [
        (f"https://sketchfab.com/3d-models/old-wooden-chair-{UID}", UID),
        (f"https://sketchfab.com/3d-models/{UID}", UID),
        (f"https://sketchfab.com/models/{UID}/embed", UID),
        (f"https://sketchfab.com/models/{UID}", UID),
        (f"https://sketchfab.com/orgs/museum/3d-models/vase-{UID}", UID),
        ("https://sketchfab.com/northwood3d", None),
        ("https://www.thingiverse.com/thing:1", None),
    ],
)
def test_parse_url(url: str, uid: str | None) -> None:
    assert SketchfabAdapter().parse_url(url) == uid
