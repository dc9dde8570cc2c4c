"""Printables, Thangs and GrabCAD: no public API, so adapters go only as far as solid facts.

``shared/platforms/`` rates all three "C": internal endpoints reverse-engineered by third parties,
no documentation and no terms granting API use. What *is* solid is how their model-page URLs name
a model (and, for Thangs, the shape of the model-detail answer, confirmed from a recorded real
response). Everything else answers ``PlatformError(reason="platform_unavailable")`` saying why,
rather than guessing at endpoints that may break or be disallowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ... import licenses
from ...archive import model_format
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter


class _Unofficial(HttpAdapter):
    why_search = ""
    why_download = ""

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        raise self.unavailable(self.why_search)

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        raise self.unavailable(self.why_search)

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        raise self.unavailable(self.why_download)


class PrintablesAdapter(_Unofficial):
    platform_id = "printables"
    default_base_url = "https://api.printables.com"
    default_rate_limit = RateLimit(1, 1.0)
    hosts = ("api.printables.com", "files.printables.com", "media.printables.com")
    why_search = ("Printables has no public API: its GraphQL endpoint is internal, undocumented, has "
                  "introspection disabled and no terms allowing API use (shared/platforms/printables.md, "
                  "confidence C); Destill3D does not guess at it. Download the files and use the local platform.")
    why_download = why_search
    _URL_RE = re.compile(r"(?:printables\.com/(?:[a-z]{2}/)?model|prusaprinters\.org/prints)/(\d+)", re.I)

    def parse_url(self, url: str) -> str | None:
        match = self._URL_RE.search(url.strip())
        return match.group(1) if match else None


class ThangsAdapter(_Unofficial):
    """Model detail (``GET /api/models/{id}``) is confirmed from a recorded response; search and
    downloads are not."""

    platform_id = "thangs"
    default_base_url = "https://thangs.com/api"
    default_rate_limit = RateLimit(1, 2.0)
    hosts = ("thangs.com",)
    why_search = ("Thangs has no public API and its search endpoint is unconfirmed (shared/platforms/thangs.md, "
                  "confidence C); only model detail by id or URL is supported.")
    why_download = ("Thangs downloads need a logged-in account and the download endpoint is unconfirmed "
                    "(shared/platforms/thangs.md); Destill3D does not guess at it.")
    _URL_RES = (re.compile(r"thangs\.com/designer/[^/]+/3d-model/[^/?#]*-(\d+)", re.I),
                re.compile(r"thangs\.com/m/(\d+)", re.I))

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        raise self.unavailable(self.why_search)

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        raw, _ = await self.get_json(self.api(f"/models/{source_id}"), headers={"Accept": "application/json"})
        owner = raw.get("owner") or {}
        parts = [p for p in raw.get("parts") or [] if isinstance(p, dict)]
        return ModelMetadata(
            platform=self.platform_id,
            source_id=str(raw.get("id") or source_id),
            title=str(raw.get("name") or ""),
            author=str(owner.get("username") or ""),
            description=str(raw.get("description") or ""),
            source_url=f"https://thangs.com/m/{raw.get('id') or source_id}",
            # ``license`` is a path to a LICENSE.txt in the model folder, not a licence name: unknown
            license=licenses.LicenseInfo(raw=str(raw.get("license") or ""), spdx=""),
            files=[ModelFile(file_id=str(p.get("partIdentifier") or p.get("filename")),
                             name=str(p.get("originalFileName") or ""),
                             format=model_format(str(p.get("originalFileName") or ""))) for p in parts],
            created_at=str(raw.get("created") or ""),
        )

    def parse_url(self, url: str) -> str | None:
        url = unquote(url.strip())
        for pattern in self._URL_RES:
            if match := pattern.search(url):
                return match.group(1)
        return None


class GrabCADAdapter(_Unofficial):
    platform_id = "grabcad"
    default_base_url = "https://grabcad.com/community/api/v1"
    default_rate_limit = RateLimit(1, 2.0)
    hosts = ("grabcad.com",)
    why_search = ("GrabCAD has no public API: its library routes are internal, behind bot protection, and "
                  "may conflict with GrabCAD's terms (shared/platforms/grabcad.md, confidence C).")
    why_download = ("GrabCAD downloads need a logged-in browser session (cookies + XSRF token); Destill3D "
                    "does not automate that. Download the files and use the local platform.")
    _URL_RE = re.compile(r"grabcad\.com/library/([a-z0-9-]+)", re.I)

    def parse_url(self, url: str) -> str | None:
        match = self._URL_RE.search(url.strip())
        return match.group(1).lower() if match else None
