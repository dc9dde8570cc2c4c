"""Every platform's licence strings -> SPDX + flags, and the research/commercial/any policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from destill3d_tui.engine import licenses
from destill3d_tui.engine.licenses import LicenseInfo

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "platforms" / "fixtures"


def load(platform: str, name: str):  # type: ignore[no-untyped-def]
    return json.loads((FIXTURES / platform / name).read_text())


@pytest.mark.parametrize(
    ("raw", "spdx", "commercial", "derivatives", "share_alike"),
    [
        ("Creative Commons - Attribution", "CC-BY-4.0", True, True, False),
        ("Creative Commons - Attribution - Share Alike", "CC-BY-SA-4.0", True, True, True),
        ("Creative Commons - Attribution - No Derivatives", "CC-BY-ND-4.0", True, False, False),
        ("Creative Commons - Attribution - Non-Commercial", "CC-BY-NC-4.0", False, True, False),
        ("Creative Commons - Attribution - Non-Commercial - Share Alike", "CC-BY-NC-SA-4.0", False, True, True),
        ("Creative Commons - Attribution - Non-Commercial - No Derivatives", "CC-BY-NC-ND-4.0", False, False, False),
        ("Creative Commons - Public Domain Dedication", "CC0-1.0", True, True, False),
        ("GNU - GPL", "GPL-2.0-or-later", True, True, True),
        ("BSD License", "BSD-3-Clause", True, True, False),
    ],
)
def test_thingiverse_strings(raw: str, spdx: str, commercial: bool, derivatives: bool, share_alike: bool) -> None:
    info = licenses.thingiverse(raw)
    assert (info.spdx, info.commercial, info.derivatives, info.share_alike) == (spdx, commercial, derivatives,
                                                                                share_alike)
    assert info.raw == raw


def test_thingiverse_fixtures_and_unknowns() -> None:
    assert licenses.thingiverse(load("thingiverse", "thing_detail.json")["license"]).spdx == "CC-BY-4.0"
    assert licenses.thingiverse(load("thingiverse", "thing_detail_nc_sa.json")["license"]).spdx == "CC-BY-NC-SA-4.0"
    legacy = licenses.thingiverse("Creative Commons - Share Alike")  # legacy, no attribution: unknown
    assert legacy.spdx == "" and not licenses.allowed(legacy, "research")
    reserved = licenses.thingiverse("All Rights Reserved")
    assert not licenses.allowed(reserved, "research") and licenses.allowed(reserved, "any")


def test_sketchfab_fixtures() -> None:
    results = load("sketchfab", "search_models.json")["results"]
    spdx = [licenses.sketchfab(r["license"]).spdx for r in results]
    assert spdx == ["CC-BY-4.0", "CC0-1.0", "CC-BY-NC-4.0"]  # search gives {uid, label} only: uid lookup
    detail = licenses.sketchfab(load("sketchfab", "model_detail.json")["license"])
    assert detail.spdx == "CC-BY-4.0" and detail.raw == "CC Attribution"
    for entry in load("sketchfab", "licenses.json")["results"]:
        info = licenses.sketchfab(entry)
        assert info.spdx, entry["slug"]
        assert licenses.allowed(info, "research") == (entry["slug"] not in {"free-st", "st", "ed"})
    assert licenses.sketchfab(None).spdx == ""


def test_myminifactory_flags() -> None:
    items = load("myminifactory", "search.json")["items"]
    owl, bookend = (licenses.myminifactory(i["licenses"], i["license"]) for i in items)
    assert not owl.commercial and owl.derivatives and owl.attribution
    assert bookend.commercial and bookend.derivatives
    assert licenses.allowed(owl, "research") and not licenses.allowed(owl, "commercial")
    assert licenses.allowed(bookend, "commercial")
    store = licenses.myminifactory([{"type": "store", "value": True}, {"type": "share", "value": True}])
    assert not licenses.allowed(store, "research")


def test_cults3d_github_smithsonian_printables() -> None:
    results = load("cults3d", "search.json")["data"]["creationsSearchBatch"]["results"]
    infos = [licenses.cults3d(r["license"]) for r in results]
    assert [i.spdx for i in infos] == ["CC-BY-4.0", "CC-BY-NC-4.0", "LicenseRef-Cults-Private"]
    assert [licenses.allowed(i, "research") for i in infos] == [True, True, False]
    repo = licenses.github(load("github", "repo.json")["license"])
    assert repo.spdx == "CERN-OHL-S-2.0" and repo.share_alike and licenses.allowed(repo, "commercial")
    assert licenses.github({"spdx_id": "NOASSERTION", "name": "Other"}).spdx == ""
    assert licenses.smithsonian("CC0").spdx == "CC0-1.0"
    assert licenses.smithsonian("Usage conditions apply").spdx == ""
    printable = licenses.printables(load("printables", "print_detail.json")["data"]["print"]["license"])
    assert printable.spdx == "CC-BY-NC-4.0" and not printable.commercial
    no_remix = licenses.printables({"name": "Creative Commons — Attribution", "disallowRemixing": True})
    assert no_remix.spdx == "CC-BY-4.0" and not no_remix.derivatives


@pytest.mark.parametrize(
    ("spdx", "research", "commercial"),
    [
        ("CC0-1.0", True, True),
        ("CC-BY-4.0", True, True),
        ("CC-BY-SA-4.0", True, True),
        ("MIT", True, True),
        ("Apache-2.0", True, True),
        ("GPL-3.0-only", True, True),
        ("CC-BY-NC-4.0", True, False),
        ("CC-BY-NC-SA-4.0", True, False),
        ("CC-BY-NC-ND-4.0", True, False),
        ("CC-BY-ND-4.0", True, False),
        ("", False, False),
        ("LicenseRef-All-Rights-Reserved", False, False),
    ],
)
def test_policy_matches_spec_14_3(spdx: str, research: bool, commercial: bool) -> None:
    info = licenses.from_spdx(spdx) if spdx else LicenseInfo(raw="mystery", spdx="")
    assert licenses.allowed(info, "research") is research
    assert licenses.allowed(info, "commercial") is commercial
    assert licenses.allowed(info, "any")
    with pytest.raises(ValueError):
        licenses.allowed(info, "whatever")
