"""Sketchfab Data API v3 + Download API (``shared/platforms/sketchfab.md``).

Search and detail work anonymously; ``/models/{uid}/download`` needs a user credential
(``Authorization: Token <api token>`` or ``Bearer <oauth token>``) and answers short-lived
signed S3 URLs per archive (``glb``, ``gltf`` zip, ``usdz``, ``source``). Those are fetched right
before use, with no Authorization header, and asked for again once if they expired.
Cursor pagination: ``next`` is an absolute URL, ``count`` <= 24. Rate limits are unpublished:
paced at 1 request/s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ... import licenses
from ...errors import DownloadError, PlatformError
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter

# Best first: one self-contained file, then the glTF zip, then whatever the author uploaded.
ARCHIVE_ORDER = ("glb", "gltf", "source")
SORTS = {"-likeCount", "-viewCount", "-publishedAt", "-staffpickedAt"}
_URL_RE = re.compile(r"sketchfab\.com/(?:orgs/[^/]+/)?(?:3d-models|models)/(?:[\w-]*-)?([0-9a-f]{32})(?:[/?#]|$)",
                     re.I)


class SketchfabAdapter(HttpAdapter):
    platform_id = "sketchfab"
    default_base_url = "https://api.sketchfab.com/v3"
    default_rate_limit = RateLimit(1, 1.0)
    hosts = ("api.sketchfab.com", "sketchfab-prod-media.s3.amazonaws.com", "media.sketchfab.com")
    files_are_models = False  # the archives are alternative encodings of one model

    def _auth(self, required: bool = False) -> dict[str, str] | None:
        oauth = self.credential("oauth")
        if oauth:
            return {"Authorization": f"Bearer {oauth}"}
        token = self.credential()
        if token:
            return {"Authorization": f"Token {token}"}
        if required:
            raise PlatformError("sketchfab downloads need a user credential: set SKETCHFAB_API_KEY (API token) or "
                                "SKETCHFAB_OAUTH_TOKEN", platform=self.platform_id, reason="auth_failed",
                                kind="permanent")
        return None

    # ------------------------------------------------------------ search

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters()
        if isinstance(page, str) and page.startswith(("http://", "https://")):
            body, _ = await self.get_json(page, auth=self._auth())  # the API's own "next" URL, as is
        else:
            params: dict[str, Any] = {"type": "models", "q": query, "downloadable": "true",
                                      "count": max(1, min(filters.per_page, 24))}
            if page not in (None, 1, "1"):
                params["cursor"] = str(page)
            slug = licenses.SKETCHFAB_SLUG_FOR_SPDX.get(str(filters.extra.get("license_spdx", "")))
            if slug:
                params["licenses"] = slug
            if filters.sort in SORTS:
                params["sort_by"] = filters.sort
            body, _ = await self.get_json(self.api("/search"), params=params, auth=self._auth())
        results = [self._model(m) for m in body.get("results") or [] if isinstance(m, dict)]
        return SearchPage(results=results, page=page, total=body.get("totalCount"), next_page=body.get("next"))

    def _model(self, raw: dict[str, Any]) -> ModelMetadata:
        uid = str(raw.get("uid"))
        archives = raw.get("archives") or {}
        files = [ModelFile(file_id=key, name=f"{uid}.glb" if key == "glb" else f"{uid}_{key}.zip",
                           size=(archives.get(key) or {}).get("size"), format="glb" if key == "glb" else "zip")
                 for key in ARCHIVE_ORDER if key in archives]
        return ModelMetadata(
            platform=self.platform_id,
            source_id=uid,
            title=str(raw.get("name") or ""),
            author=str((raw.get("user") or {}).get("username") or ""),
            description=str(raw.get("description") or ""),
            source_url=str(raw.get("viewerUrl") or f"https://sketchfab.com/3d-models/{uid}"),
            license=licenses.sketchfab(raw.get("license")),
            tags=[str(t.get("name")) for t in raw.get("tags") or [] if isinstance(t, dict)],
            files=files,
            created_at=str(raw.get("publishedAt") or raw.get("createdAt") or ""),
            extra={"downloadable": bool(raw.get("isDownloadable")), "face_count": raw.get("faceCount")},
        )

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        body, _ = await self.get_json(self.api(f"/models/{source_id}"), auth=self._auth())
        return self._model(body)

    # ------------------------------------------------------------ download

    async def _links(self, uid: str) -> dict[str, Any]:
        body, _ = await self.get_json(self.api(f"/models/{uid}/download"), auth=self._auth(required=True))
        return body

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        links = await self._links(source_id)
        keys = [file_id] if file_id in links else [k for k in ARCHIVE_ORDER if k in links]
        if not keys:
            raise DownloadError(f"sketchfab model {source_id} offers no glb/gltf/source archive",
                                reason="no_model_file", kind="permanent")
        key = keys[0]
        entry = links[key]

        async def refetch() -> str:
            return str((await self._links(source_id))[key]["url"])

        name = f"{source_id}.glb" if key == "glb" else f"{source_id}_{key}.zip"
        got = await self.fetch(str(entry["url"]), target_dir, name, expected_size=entry.get("size"),
                               refetch=refetch)
        return self.finish(got, target_dir)

    def parse_url(self, url: str) -> str | None:
        match = _URL_RE.search(url.strip())
        return match.group(1).lower() if match else None
