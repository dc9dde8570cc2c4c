"""Thingiverse adapter end to end against a fake that speaks its API (fixtures + corpus files)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire.base import SearchFilters
from destill3d_tui.engine.acquire.platforms.thingiverse import ThingiverseAdapter
from destill3d_tui.engine.acquire.registry import adapter_for_url, get_adapter
from destill3d_tui.engine.errors import PlatformError
from tests.acquire.conftest import platform_settings
from tests.fakes.server import Reply
from tests.fakes.thingiverse import FakeThingiverse


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeThingiverse]:
    with FakeThingiverse(n_things=12) as server:
        monkeypatch.setenv("THINGIVERSE_API_KEY", server.token)
        yield server


def adapter(fake: FakeThingiverse, **acq: object) -> ThingiverseAdapter:
    settings = platform_settings("thingiverse", fake.url, fake.cdn.hostport, **acq)
    made = get_adapter("thingiverse", settings)
    assert isinstance(made, ThingiverseAdapter)
    return made


def test_search_pages_through_every_hit_once(fake: FakeThingiverse) -> None:
    tv = adapter(fake)
    seen: list[str] = []
    page: object = 1
    while page is not None:
        result = asyncio.run(tv.search("gear", SearchFilters(per_page=5), page))
        assert result.total == 14
        seen += [m.source_id for m in result.results]
        page = result.next_page
    assert len(seen) == 14 and len(set(seen)) == 14
    first = fake.server.hits("/search/gear/")[0]
    assert first.query["type"] == "things" and first.query["per_page"] == "5"
    assert first.headers["authorization"] == f"Bearer {fake.token}"
    empty = asyncio.run(tv.search("no such thing", SearchFilters()))
    assert empty.results == [] and empty.next_page is None and empty.total == 0


def test_search_hits_have_no_licence_until_detail(fake: FakeThingiverse) -> None:
    tv = adapter(fake)
    hit = asyncio.run(tv.search("planetary", SearchFilters()))
    assert [m.source_id for m in hit.results] == ["5823117"]
    assert hit.results[0].license.spdx == "" and hit.results[0].author == "gearsmith_lab"
    meta = asyncio.run(tv.get_metadata("5823117"))
    assert meta.license.spdx == "CC-BY-4.0" and meta.license.commercial
    assert [f.name for f in meta.files] == ["sun_gear.stl", "planet_gear_x3.stl", "ring_housing.3mf"]
    assert meta.tags == ["gearbox", "planetary gear"]
    assert meta.source_url == "https://www.thingiverse.com/thing:5823117"
    remix = asyncio.run(tv.get_metadata("4410982"))
    assert remix.license.spdx == "CC-BY-NC-SA-4.0" and remix.extra["ancestors"] == [3015599]


def test_download_one_file_via_tracked_redirect(fake: FakeThingiverse, tmp_path: Path) -> None:
    tv = adapter(fake)
    result = asyncio.run(tv.download("5823117", tmp_path, "12093311"))
    assert result.primary == tmp_path / "sun_gear.stl"
    assert result.sha256 == hashlib.sha256(fake.blobs[12093311]).hexdigest()
    assert result.bytes_downloaded == len(fake.blobs[12093311])
    assert fake.server.hits("/files/12093311/download")[0].headers["authorization"] == f"Bearer {fake.token}"
    cdn = fake.cdn.hits("/cdn/")
    assert len(cdn) == 1 and "authorization" not in cdn[0].headers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sun_gear.stl"]


def test_download_zip_is_kept_for_the_isolated_worker(fake: FakeThingiverse, tmp_path: Path) -> None:
    tv = adapter(fake)
    meta = asyncio.run(tv.get_metadata("7000004"))
    assert [f.format for f in meta.files] == ["zip"]
    result = asyncio.run(tv.download("7000004", tmp_path, meta.files[0].file_id))
    assert result.primary == tmp_path / meta.files[0].name and result.files == [result.primary]
    assert sorted(p.name for p in tmp_path.iterdir()) == [meta.files[0].name]  # unpacked by extraction, not here


def test_missing_and_bad_credentials(fake: FakeThingiverse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THINGIVERSE_API_KEY")
    with pytest.raises(PlatformError) as info:
        asyncio.run(adapter(fake).search("gear", SearchFilters()))
    assert info.value.reason == "auth_failed" and fake.server.requests == []
    monkeypatch.setenv("THINGIVERSE_API_KEY", "wrong-token")
    with pytest.raises(PlatformError) as info:
        asyncio.run(adapter(fake).search("gear", SearchFilters()))
    assert info.value.reason == "auth_failed" and "wrong-token" not in str(info.value)


def test_unknown_thing_is_not_found(fake: FakeThingiverse) -> None:
    with pytest.raises(PlatformError) as info:
        asyncio.run(adapter(fake).get_metadata("9999999"))
    assert info.value.reason == "not_found"


def test_throttle_429_without_retry_after_is_survived(fake: FakeThingiverse) -> None:
    fake.server.inject("/search", Reply(429, ""), Reply(420, ""))
    result = asyncio.run(adapter(fake).search("gear", SearchFilters(per_page=3)))
    assert len(result.results) == 3 and len(fake.server.hits("/search")) == 3


def test_default_pacing_is_within_the_published_limit() -> None:
    tv = ThingiverseAdapter()
    assert tv.rate_limit.requests / tv.rate_limit.per_seconds <= 300 / 300


@pytest.mark.parametrize(
    ("url", "source_id"),
    [
        ("https://www.thingiverse.com/thing:5823117", "5823117"),
        ("http://thingiverse.com/thing:5823117/files", "5823117"),
        ("https://www.thingiverse.com/thing:5823117/comments?x=1", "5823117"),
        ("https://www.thingiverse.com/download:12093311", "file:12093311"),
        ("https://api.thingiverse.com/things/4410982", "4410982"),
        ("https://www.thingiverse.com/thing:4410982/?fileId=8120077", "4410982:8120077"),
        ("https://sketchfab.com/3d-models/x-8d3f0c5e2a1b4c7d9e6f0a1b2c3d4e5f", None),
        ("https://www.thingiverse.com/gearsmith_lab", None),
    ],
)
def test_parse_url(url: str, source_id: str | None) -> None:
    assert ThingiverseAdapter().parse_url(url) == source_id
    found = adapter_for_url(url)
    if source_id:
        assert found is not None and found[0].platform_id == "thingiverse" and found[1] == source_id
