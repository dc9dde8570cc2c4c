"""GitHub, MyMiniFactory, Cults3D, Smithsonian against fakes speaking their APIs; Printables/Thangs/GrabCAD limits."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire.base import SearchFilters
from destill3d_tui.engine.acquire.registry import get_adapter
from destill3d_tui.engine.errors import PlatformError
from tests.acquire.conftest import platform_settings
from tests.fakes.cults3d import FakeCults3D
from tests.fakes.github import REPO, FakeGitHub
from tests.fakes.myminifactory import FakeMyMiniFactory
from tests.fakes.server import FakeServer, json_reply
from tests.fakes.smithsonian import FakeSmithsonian

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PACKAGE = "5d8f0b2e-3c41-4a6f-9b7e-0c2d4e6f8a1b"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# ---------------------------------------------------------------- GitHub


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        yield fake


def gh(fake: FakeGitHub):  # type: ignore[no-untyped-def]
    return get_adapter("github", platform_settings("github", fake.url, fake.raw.hostport))


def test_github_search_pages_with_link_headers(github: FakeGitHub) -> None:
    adapter = gh(github)
    first = run(adapter.search("gripper stl", SearchFilters(per_page=5)))
    assert len(first.results) == 5 and first.next_page == 2 and first.total == 7
    second = run(adapter.search("gripper stl", SearchFilters(per_page=5), 2))
    assert len(second.results) == 2 and second.next_page is None
    assert first.results[0].license.spdx == "CERN-OHL-S-2.0"
    hit = github.api.hits("/search/repositories")[0]
    assert hit.headers["x-github-api-version"] == "2022-11-28" and hit.headers["authorization"].startswith("Bearer")
    assert hit.headers["accept"] == "application/vnd.github+json"


def test_github_tree_lists_model_files(github: FakeGitHub) -> None:
    meta = run(gh(github).get_metadata(REPO))
    assert [f.file_id for f in meta.files] == ["cad/stl/finger_left.stl", "cad/stl/finger_right.stl",
                                              "cad/gripper_body.glb", "cad/gripper_body.step"]
    assert meta.license.spdx == "CERN-OHL-S-2.0" and meta.extra["ref"] == "main"
    assert github.api.hits(f"/repos/{REPO}/git/trees/main")[0].query["recursive"] == "1"


def test_github_download_via_contents_download_url(github: FakeGitHub, tmp_path: Path) -> None:
    result = run(gh(github).download(REPO, tmp_path, "cad/stl/finger_left.stl"))
    assert result.primary.name == "finger_left.stl"
    assert result.sha256 == hashlib.sha256(github.files["cad/stl/finger_left.stl"]).hexdigest()
    assert "authorization" not in github.raw.hits()[0].headers


def test_github_lfs_pointer_is_replaced_by_the_object(github: FakeGitHub, tmp_path: Path) -> None:
    result = run(gh(github).download(f"{REPO}@main:cad/gripper_body.step", tmp_path))
    assert result.primary.read_bytes() == github.lfs_object
    assert result.sha256 == hashlib.sha256(github.lfs_object).hexdigest()


def test_github_bad_token(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong")
    with pytest.raises(PlatformError) as info:
        run(gh(github).get_metadata(REPO))
    assert info.value.reason == "auth_failed"


@pytest.mark.parametrize(
    ("url", "source_id"),
    [
        (f"https://github.com/{REPO}/blob/main/cad/stl/finger_left.stl", f"{REPO}@main:cad/stl/finger_left.stl"),
        (f"https://raw.githubusercontent.com/{REPO}/3b9e1f0c/cad/x.stl", f"{REPO}@3b9e1f0c:cad/x.stl"),
        (f"https://github.com/{REPO}/tree/main/cad/stl", f"{REPO}@main:cad/stl/"),
        (f"https://github.com/{REPO}", REPO),
        (f"https://github.com/{REPO}.git", REPO),
        ("https://github.com/orgs/kestrel-robotics", None),
        ("https://gitlab.com/a/b", None),
    ],
)
def test_github_parse_url(url: str, source_id: str | None) -> None:
    assert get_adapter("github").parse_url(url) == source_id


# ---------------------------------------------------------------- MyMiniFactory


@pytest.fixture
def mmf(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMyMiniFactory]:
    with FakeMyMiniFactory() as fake:
        monkeypatch.setenv("MYMINIFACTORY_API_KEY", fake.key)
        yield fake


def mmf_adapter(fake: FakeMyMiniFactory):  # type: ignore[no-untyped-def]
    return get_adapter("myminifactory", platform_settings("myminifactory", fake.url))


def test_mmf_search_metadata_and_licence_flags(mmf: FakeMyMiniFactory) -> None:
    adapter = mmf_adapter(mmf)
    first = run(adapter.search("owl", SearchFilters(per_page=4)))
    assert first.total == 7 and len(first.results) == 4 and first.next_page == 2
    assert run(adapter.search("owl", SearchFilters(per_page=4), 2)).next_page is None
    assert mmf.server.hits("/api/v2/search")[0].query["key"] == mmf.key
    meta = run(adapter.get_metadata("181904"))
    assert meta.author == "Ruth Scans" and [f.name for f in meta.files] == ["carved-owl.stl", "carved-owl-base.stl"]
    assert meta.license.derivatives and not meta.license.commercial


def test_mmf_download_needs_oauth(mmf: FakeMyMiniFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    adapter = mmf_adapter(mmf)
    with pytest.raises(PlatformError) as info:
        run(adapter.download("181904", tmp_path))
    assert info.value.reason == "auth_failed" and "OAuth" in str(info.value)
    monkeypatch.setenv("MYMINIFACTORY_OAUTH_TOKEN", mmf.oauth)
    result = run(mmf_adapter(mmf).download("181904", tmp_path))
    assert result.primary.name == "carved-owl.stl"
    assert result.sha256 == hashlib.sha256(mmf.blobs[1819040]).hexdigest()


def test_mmf_unknown_object_and_parse_url(mmf: FakeMyMiniFactory) -> None:
    with pytest.raises(PlatformError) as info:
        run(mmf_adapter(mmf).get_metadata("1"))
    assert info.value.reason == "not_found"
    parse = get_adapter("myminifactory").parse_url
    assert parse("https://www.myminifactory.com/object/3d-print-carved-wooden-owl-181904") == "181904"
    assert parse("https://myminifactory.com/object/3d-print-owl-bookend-176550?x=1") == "176550"
    assert parse("https://www.myminifactory.com/users/Ruth%20Scans") is None


# ---------------------------------------------------------------- Cults3D


@pytest.fixture
def cults(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCults3D]:
    with FakeCults3D() as fake:
        monkeypatch.setenv("CULTS3D_USERNAME", fake.user)
        monkeypatch.setenv("CULTS3D_API_KEY", fake.key)
        yield fake


def cults_adapter(fake: FakeCults3D):  # type: ignore[no-untyped-def]
    return get_adapter("cults3d", platform_settings("cults3d", fake.url))


def test_cults_search_offsets_and_licences(cults: FakeCults3D) -> None:
    adapter = cults_adapter(cults)
    first = run(adapter.search("planter", SearchFilters(per_page=2)))
    assert [m.source_id for m in first.results] == ["low-poly-planter-2", "self-watering-planter"]
    assert first.next_page == 2
    second = run(adapter.search("planter", SearchFilters(per_page=2), 2))
    assert [m.license.spdx for m in second.results] == ["LicenseRef-Cults-Private"] and second.next_page is None
    sent = cults.server.hits("/graphql")
    assert sent[0].headers["authorization"].startswith("Basic ")
    import json

    assert json.loads(sent[1].body)["variables"]["offset"] == 2


def test_cults_null_file_url_is_unavailable_not_guessed(cults: FakeCults3D, tmp_path: Path) -> None:
    adapter = cults_adapter(cults)
    with pytest.raises(PlatformError) as info:
        run(adapter.download("low-poly-planter-2", tmp_path))
    assert info.value.reason == "platform_unavailable" and "fileUrl" in str(info.value)
    cults.give_file_urls = True
    result = run(adapter.download("low-poly-planter-2", tmp_path))
    assert result.primary.name == "low_poly_planter.stl"
    with pytest.raises(PlatformError) as missing:
        run(adapter.get_metadata("no-such-design"))
    assert missing.value.reason == "not_found"


def test_cults_rate_headers_pause_when_spent(cults: FakeCults3D) -> None:
    cults.remaining = 2  # the next answer says 1 left, then 0 -> pause until the ISO reset
    adapter = cults_adapter(cults)
    run(adapter.search("planter", SearchFilters(per_page=1)))
    run(adapter.search("planter", SearchFilters(per_page=1)))
    assert adapter.http.bucket("cults3d").status().paused_until is not None


def test_cults_parse_url() -> None:
    parse = get_adapter("cults3d").parse_url
    assert parse("https://cults3d.com/en/3d-model/home/low-poly-planter-2") == "low-poly-planter-2"
    assert parse("https://cults3d.com/de/modell-3d/haus/low-poly-planter-2") == "low-poly-planter-2"
    assert parse("https://cults3d.com/fr/modèle-3d/maison/low-poly-planter-2") == "low-poly-planter-2"
    assert parse("https://cults3d.com/en/users/verdigris/3d-models") is None


# ---------------------------------------------------------------- Smithsonian


@pytest.fixture
def si(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmithsonian]:
    with FakeSmithsonian() as fake:
        yield fake


def si_adapter(fake: FakeSmithsonian):  # type: ignore[no-untyped-def]
    return get_adapter("smithsonian", platform_settings("smithsonian", fake.url))


def test_smithsonian_rows_grouped_per_package(si: FakeSmithsonian) -> None:
    result = run(si_adapter(si).search("", SearchFilters(per_page=100)))
    assert [m.source_id for m in result.results] == [PACKAGE, "a9c3e1f7-2b4d-46e8-8a0c-1e3f5b7d9c2e"]
    mandible = result.results[0]
    assert mandible.files[0].name == "usnm_125345-150k-2048-medium.glb"  # undracoed Medium GLB first
    assert all("draco" not in f.name for f in mandible.files)
    paged = run(si_adapter(si).search("", SearchFilters(per_page=4)))
    assert paged.next_page == 2 and si.server.hits()[-1].query["start"] == "0"


def test_smithsonian_licence_needs_open_access_key(si: FakeSmithsonian, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    assert run(si_adapter(si).get_metadata(PACKAGE)).license.spdx == ""
    monkeypatch.setenv("SMITHSONIAN_API_KEY", si.api_key)
    meta = run(si_adapter(si).get_metadata(PACKAGE))
    assert meta.license.spdx == "CC0-1.0"
    result = run(si_adapter(si).download(PACKAGE, tmp_path))
    assert result.primary.name.endswith("-medium.glb") and result.primary.read_bytes() == si.blobs[result.primary.name]


def test_smithsonian_parse_url() -> None:
    parse = get_adapter("smithsonian").parse_url
    assert parse(f"https://3d.si.edu/object/3d/mandible-of-thylacinus:{PACKAGE}") == PACKAGE
    assert parse(f"https://3d-api.si.edu/content/document/3d_package:{PACKAGE}/x.glb") == PACKAGE
    assert parse(f"https://3d-api.si.edu/voyager/3d_package:{PACKAGE}") == PACKAGE
    assert parse("https://www.si.edu/openaccess") is None


# ---------------------------------------------------------------- Printables, Thangs, GrabCAD


def test_unofficial_platforms_say_why(tmp_path: Path) -> None:
    for name in ("printables", "grabcad"):
        adapter = get_adapter(name)
        calls = (lambda a=adapter: a.search("clip", SearchFilters()), lambda a=adapter: a.get_metadata("1"),
                 lambda a=adapter: a.download("1", tmp_path))
        for call in calls:
            with pytest.raises(PlatformError) as info:
                run(call())
            assert info.value.reason == "platform_unavailable"
            assert "no public API" in str(info.value) or "logged-in" in str(info.value)
    assert get_adapter("printables").parse_url("https://www.printables.com/model/742111-cable-clip/files") == "742111"
    assert get_adapter("printables").parse_url("https://www.prusaprinters.org/prints/742111-x") == "742111"
    assert get_adapter("grabcad").parse_url("https://grabcad.com/library/nema-17-stepper-motor-bracket-2") == \
        "nema-17-stepper-motor-bracket-2"


def test_thangs_detail_is_supported_search_and_download_are_not(tmp_path: Path) -> None:
    import json

    detail = json.loads((SHARED / "platforms" / "fixtures" / "thangs" / "model_detail.json").read_text())

    def app(request):  # type: ignore[no-untyped-def]
        if request.path == "/api/models/912204":
            return json_reply(detail)
        from tests.fakes.server import Reply

        return Reply(404, "Not Found", headers={"content-type": "text/plain; charset=utf-8"})

    with FakeServer(app) as server:
        adapter = get_adapter("thangs", platform_settings("thangs", server.url + "/api"))
        meta = run(adapter.get_metadata("912204"))
        assert meta.title == "Headphone hook (under-desk)" and meta.author == "oakwright"
        assert meta.license.spdx == "" and meta.files[0].name == "headphone_hook.stl"
        with pytest.raises(PlatformError) as info:
            run(adapter.get_metadata("1"))
        assert info.value.reason == "not_found"
        for call in (lambda: adapter.search("hook", SearchFilters()), lambda: adapter.download("912204", tmp_path)):
            with pytest.raises(PlatformError) as info:
                run(call())
            assert info.value.reason == "platform_unavailable"
    parse = adapter.parse_url
    assert parse("https://thangs.com/designer/oakwright/3d-model/Headphone%20hook%20(under-desk)-912204") == "912204"
    assert parse("https://thangs.com/m/912204") == "912204"
