"""Licence strings of every platform -> SPDX id + flags, and the licence policy (spec 14.3).

Each platform speaks its own licence dialect (see ``shared/platforms/README.md``):
Thingiverse a human string, Sketchfab a slug/label object, MyMiniFactory boolean flags,
Cults3D an SPDX id or null, GitHub the repository's SPDX id, Smithsonian ``CC0`` markers,
Printables its own names. :func:`normalize` turns all of them into a :class:`LicenseInfo`.

Unknown licences are never free: ``spdx`` stays ``""`` and every policy but ``any`` refuses them.

Policies:

- ``research``: any known open licence (CC incl. NC/ND variants, OSS, public domain, platform
  terms that explicitly allow sharing). Proprietary store terms and "all rights reserved" are refused.
- ``commercial``: open *and* commercial use *and* derivatives allowed (the spec's permissive set).
- ``any``: everything, unknown included (the user takes responsibility).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass
class LicenseInfo:
    """A licence as SPDX id + the flags the policy gate reads (kept beside the platform's own string)."""

    raw: str = ""  # the platform's own string
    spdx: str = ""  # "CC-BY-4.0"; "" when unknown (unknown is never free)
    commercial: bool = False
    derivatives: bool = False
    share_alike: bool = False
    attribution: bool = True


POLICIES = ("research", "commercial", "any")

# SPDX ids (or LicenseRef-*) that are known but not open: never allowed except under ``any``.
PROPRIETARY = {
    "LicenseRef-All-Rights-Reserved",
    "LicenseRef-Sketchfab-Standard",
    "LicenseRef-Sketchfab-Editorial",
    "LicenseRef-Sketchfab-Free-Standard",
    "LicenseRef-Cults-Private",
    "LicenseRef-GrabCAD-Terms",
}

# (commercial, derivatives, share_alike, attribution) of open, non-CC licences.
_OSS: dict[str, tuple[bool, bool, bool, bool]] = {
    "MIT": (True, True, False, True),
    "Apache-2.0": (True, True, False, True),
    "BSD-2-Clause": (True, True, False, True),
    "BSD-3-Clause": (True, True, False, True),
    "ISC": (True, True, False, True),
    "Unlicense": (True, True, False, False),
    "0BSD": (True, True, False, False),
    "MPL-2.0": (True, True, True, True),
    "GPL-2.0": (True, True, True, True),
    "GPL-2.0-only": (True, True, True, True),
    "GPL-2.0-or-later": (True, True, True, True),
    "GPL-3.0": (True, True, True, True),
    "GPL-3.0-only": (True, True, True, True),
    "GPL-3.0-or-later": (True, True, True, True),
    "LGPL-2.1": (True, True, True, True),
    "LGPL-2.1-only": (True, True, True, True),
    "LGPL-2.1-or-later": (True, True, True, True),
    "LGPL-3.0": (True, True, True, True),
    "LGPL-3.0-only": (True, True, True, True),
    "LGPL-3.0-or-later": (True, True, True, True),
    "AGPL-3.0": (True, True, True, True),
    "AGPL-3.0-only": (True, True, True, True),
    "AGPL-3.0-or-later": (True, True, True, True),
    "CERN-OHL-P-2.0": (True, True, False, True),
    "CERN-OHL-W-2.0": (True, True, True, True),
    "CERN-OHL-S-2.0": (True, True, True, True),
    "CC0-1.0": (True, True, False, False),
    "Nokia": (True, True, True, True),
    "LicenseRef-Public-Domain": (True, True, False, False),
}

_CC_RE = re.compile(r"^CC-BY(?P<nc>-NC)?(?P<mod>-SA|-ND)?-(?P<ver>\d\.\d)$")

# Thingiverse's human strings (thingiverse.md, licence table). Legacy strings without
# "Attribution" are deliberately absent: unknown means not free.
THINGIVERSE = {
    "creative commons - attribution": "CC-BY-4.0",
    "creative commons - attribution - share alike": "CC-BY-SA-4.0",
    "creative commons - attribution - no derivatives": "CC-BY-ND-4.0",
    "creative commons - attribution - non-commercial": "CC-BY-NC-4.0",
    "creative commons - attribution - non-commercial - share alike": "CC-BY-NC-SA-4.0",
    "creative commons - attribution - non-commercial - no derivatives": "CC-BY-NC-ND-4.0",
    "creative commons - public domain dedication": "CC0-1.0",
    "public domain": "LicenseRef-Public-Domain",
    "gnu - gpl": "GPL-2.0-or-later",
    "gnu - lgpl": "LGPL-2.1-or-later",
    "bsd license": "BSD-3-Clause",
    "bsd": "BSD-3-Clause",
    "nokia": "Nokia",
    "all rights reserved": "LicenseRef-All-Rights-Reserved",
}

# Thingiverse search filter codes for each SPDX id (the ``license=`` search parameter).
THINGIVERSE_SEARCH_CODES = {
    "CC-BY-4.0": "cc",
    "CC-BY-SA-4.0": "cc-sa",
    "CC-BY-ND-4.0": "cc-nd",
    "CC-BY-NC-4.0": "cc-nc",
    "CC-BY-NC-SA-4.0": "cc-nc-sa",
    "CC-BY-NC-ND-4.0": "cc-nc-nd",
    "CC0-1.0": "pd0",
    "LicenseRef-Public-Domain": "public",
}

SKETCHFAB_SLUGS = {
    "by": "CC-BY-4.0",
    "by-sa": "CC-BY-SA-4.0",
    "by-nd": "CC-BY-ND-4.0",
    "by-nc": "CC-BY-NC-4.0",
    "by-nc-sa": "CC-BY-NC-SA-4.0",
    "by-nc-nd": "CC-BY-NC-ND-4.0",
    "cc0": "CC0-1.0",
    "free-st": "LicenseRef-Sketchfab-Free-Standard",
    "st": "LicenseRef-Sketchfab-Standard",
    "ed": "LicenseRef-Sketchfab-Editorial",
}
SKETCHFAB_UIDS = {
    "322a749bcfa841b29dff1e8a1bb74b0b": "by",
    "b9ddc40b93e34cdca1fc152f39b9f375": "by-sa",
    "72360ff1740d419791934298b8b6d270": "by-nd",
    "bbfe3f7dbcdd4122b966b85b9786a989": "by-nc",
    "2628dbe5140a4e9592126c8df566c0b7": "by-nc-sa",
    "34b725081a6a4184957efaec2cb84ed3": "by-nc-nd",
    "7c23a1ba438d4306920229c12afcb5f9": "cc0",
    "72eb2b1960364637901eacce19283624": "free-st",
    "783b685da9bf457d81e829fa283f3567": "st",
    "5b54cf13b1a4422ca439696eb152070d": "ed",
}
SKETCHFAB_SLUG_FOR_SPDX = {v: k for k, v in SKETCHFAB_SLUGS.items()}

# Store licences whose terms are known (commercial, derivatives) but which are not open.
_PROPRIETARY_FLAGS = {
    "LicenseRef-Sketchfab-Free-Standard": (True, True, False, False),
    "LicenseRef-Sketchfab-Standard": (True, True, False, False),
    "LicenseRef-Sketchfab-Editorial": (False, False, False, False),
}


def from_spdx(spdx: str | None, raw: str = "") -> LicenseInfo:
    """Flags for an SPDX id; an unknown id gives an unknown (not free) licence."""
    spdx = (spdx or "").strip()
    if not spdx or spdx.upper() in {"NOASSERTION", "NONE", "OTHER"}:
        return LicenseInfo(raw=raw or spdx, spdx="")
    match = _CC_RE.match(spdx.upper())
    if match:
        canonical = "CC-BY" + (match["nc"] or "") + (match["mod"] or "") + "-" + match["ver"]
        return LicenseInfo(
            raw=raw or spdx,
            spdx=canonical,
            commercial=not match["nc"],
            derivatives=match["mod"] != "-ND",
            share_alike=match["mod"] == "-SA",
            attribution=True,
        )
    flags = _OSS.get(spdx) or _PROPRIETARY_FLAGS.get(spdx)
    if flags is None:
        upper = {k.upper(): k for k in _OSS}
        if spdx.upper() in upper:
            return from_spdx(upper[spdx.upper()], raw)
        if spdx in PROPRIETARY:
            return LicenseInfo(raw=raw or spdx, spdx=spdx, attribution=True)
        return LicenseInfo(raw=raw or spdx, spdx="")
    commercial, derivatives, share_alike, attribution = flags
    return LicenseInfo(raw or spdx, spdx, commercial, derivatives, share_alike, attribution)


def from_cc_text(text: str) -> LicenseInfo:
    """Parse a human Creative Commons name ("CC BY-NC", "Creative Commons — Attribution — Noncommercial")."""
    low = text.lower().replace("—", "-").replace("–", "-")
    words = set(re.findall(r"[a-z0-9]+", low.replace("non-commercial", "noncommercial").replace("no-deriv", "noderiv")))
    if {"cc0"} & words or "public domain" in low or "publicdomain" in low:
        return from_spdx("CC0-1.0" if ("cc0" in words or "creative" in words) else "LicenseRef-Public-Domain", text)
    is_cc = "creative" in words or "cc" in words
    has_by = "attribution" in words or "by" in words
    if not (is_cc and has_by):
        return LicenseInfo(raw=text, spdx="")
    nc = bool({"noncommercial", "nc"} & words)
    nd = bool({"noderivatives", "noderivs", "nd", "noderiv"} & words) or "no derivatives" in low
    sa = bool({"sa", "sharealike"} & words) or "share alike" in low
    if nd and sa:
        return LicenseInfo(raw=text, spdx="")
    return from_spdx("CC-BY" + ("-NC" if nc else "") + ("-SA" if sa else "-ND" if nd else "") + "-4.0", text)


# ---------------------------------------------------------------- per platform


def thingiverse(raw: str | None) -> LicenseInfo:
    text = (raw or "").strip()
    spdx = THINGIVERSE.get(text.lower())
    return from_spdx(spdx, text) if spdx else LicenseInfo(raw=text, spdx="")


def sketchfab(raw: dict[str, Any] | None) -> LicenseInfo:
    if not raw:
        return LicenseInfo(raw="", spdx="")
    slug = raw.get("slug") or SKETCHFAB_UIDS.get(str(raw.get("uid", "")), "")
    label = str(raw.get("label") or raw.get("fullName") or slug)
    spdx = SKETCHFAB_SLUGS.get(slug)
    return from_spdx(spdx, label) if spdx else LicenseInfo(raw=label, spdx="")


def myminifactory(flags: list[dict[str, Any]] | None, summary: str = "") -> LicenseInfo:
    """MyMiniFactory gives rights as flags; they define the terms, there is no CC name."""
    values = {str(f.get("type")): bool(f.get("value")) for f in (flags or []) if isinstance(f, dict)}
    if not values:
        return LicenseInfo(raw=summary, spdx="")
    if values.get("store") or values.get("exclusivity") or not values.get("share"):
        return LicenseInfo(raw=summary, spdx="LicenseRef-All-Rights-Reserved")
    return LicenseInfo(
        raw=summary or "MyMiniFactory licence",
        spdx="LicenseRef-MyMiniFactory-" + ("Commercial" if values.get("commercial-use") else "NonCommercial"),
        commercial=values.get("commercial-use", False),
        derivatives=values.get("remix", False),
        share_alike=False,
        attribution=values.get("attribute", False) or values.get("mention", False),
    )


def cults3d(raw: dict[str, Any] | None) -> LicenseInfo:
    if not raw:
        return LicenseInfo(raw="", spdx="")
    name = str(raw.get("name") or raw.get("code") or "")
    if raw.get("spdxId"):
        info = from_spdx(raw["spdxId"], name)
        if info.spdx:
            return info
    if str(raw.get("code", "")).startswith("cults"):
        return LicenseInfo(raw=name, spdx="LicenseRef-Cults-Private", commercial=bool(raw.get("allowsCommercialUse")))
    return from_cc_text(name)


def github(raw: dict[str, Any] | None) -> LicenseInfo:
    if not raw:
        return LicenseInfo(raw="", spdx="")
    return from_spdx(raw.get("spdx_id"), str(raw.get("name") or raw.get("spdx_id") or ""))


def smithsonian(access: str | None) -> LicenseInfo:
    text = (access or "").strip()
    return from_spdx("CC0-1.0", text) if text.upper() == "CC0" else LicenseInfo(raw=text, spdx="")


def printables(raw: dict[str, Any] | None) -> LicenseInfo:
    if not raw:
        return LicenseInfo(raw="", spdx="")
    name = str(raw.get("abbreviation") or raw.get("name") or "")
    info = from_cc_text(name)
    if not info.spdx and raw.get("name"):
        info = from_cc_text(str(raw["name"]))
    info.raw = str(raw.get("name") or name)
    if info.spdx and raw.get("disallowRemixing"):
        info.derivatives = False
    return info


_BY_PLATFORM = {
    "thingiverse": thingiverse,
    "sketchfab": sketchfab,
    "cults3d": cults3d,
    "github": github,
    "smithsonian": smithsonian,
    "printables": printables,
}


def normalize(platform: str, raw: Any) -> LicenseInfo:
    """Dispatch to the platform's parser; anything unrecognised is an unknown licence."""
    if platform == "myminifactory":
        return myminifactory(raw)
    if platform == "grabcad":
        return LicenseInfo(raw=str(raw or "GrabCAD terms"), spdx="LicenseRef-GrabCAD-Terms")
    parser = _BY_PLATFORM.get(platform)
    if parser is None:
        return from_spdx(str(raw)) if isinstance(raw, str) else LicenseInfo(raw=str(raw or ""), spdx="")
    return parser(raw)


# ---------------------------------------------------------------- policy


def is_open(info: LicenseInfo) -> bool:
    """A known licence that lets others use the model (not proprietary, not unknown)."""
    return bool(info.spdx) and info.spdx not in PROPRIETARY


def why_refused(info: LicenseInfo, policy: str) -> str | None:
    """None when ``policy`` allows the licence, else a short human reason."""
    if policy not in POLICIES:
        raise ValueError(f"licence policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if policy == "any":
        return None
    label = info.spdx or info.raw or "no licence"
    if not info.spdx:
        return f"unknown licence ({info.raw or 'none given'}) is not free"
    if not is_open(info):
        return f"{label} is not an open licence"
    if policy == "commercial" and not (info.commercial and info.derivatives):
        return f"{label} does not allow commercial derived data"
    return None


def allowed(info: LicenseInfo, policy: str) -> bool:
    return why_refused(info, policy) is None


def flags_dict(info: LicenseInfo) -> dict[str, Any]:
    """The JSON form stored in queue metadata and snapshot provenance."""
    return {
        "raw": info.raw,
        "spdx": info.spdx,
        "commercial": info.commercial,
        "derivatives": info.derivatives,
        "share_alike": info.share_alike,
        "attribution": info.attribution,
    }
