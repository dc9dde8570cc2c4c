"""Cults3D GraphQL API (``shared/platforms/cults3d.md``).

``POST /graphql`` with HTTP Basic ``username:api key``; ``X-Ratelimit-*`` headers (limit 60, reset
an ISO instant) are honoured by the HTTP layer. Licences come with an SPDX id (or null for Cults'
own). Whether ``blueprints.fileUrl`` is ever filled for designs you have not bought is unconfirmed:
a null ``fileUrl`` is reported as "not downloadable through the API", never guessed around.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from ... import licenses
from ...archive import is_archive_name, model_format
from ...errors import DownloadError, PlatformError
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter

CREATION_FIELDS = """name slug url shortUrl publishedAt downloadsCount likesCount tags
  description details category { name slug } price { cents currency }
  license { code name spdxId allowsCommercialUse } creator { nick url }"""
SEARCH_QUERY = ("query SearchCreations($query: String!, $limit: Int, $offset: Int) {\n"
                "  creationsSearchBatch(query: $query, limit: $limit, offset: $offset) {\n"
                "    total results { " + CREATION_FIELDS + " } } }")
DETAIL_QUERY = ("query Creation($slug: String!) { creation(slug: $slug) { " + CREATION_FIELDS
                + " blueprints { id fileName fileExtension fileUrl } } }")
_LOCALES = "en|de|pt|es|fr|ru|zh"
_WORDS = "3d-model|modell-3d|modelo-3d|modèle-3d|mod%C3%A8le-3d|3d-móxíng|3d-m%C3%B3x%C3%ADng"
_URL_RE = re.compile(rf"^https?://(?:www\.)?cults3d\.com/(?:{_LOCALES})/(?:{_WORDS})/[\w-]+/([\w-]+)/?(?:[?#].*)?$",
                     re.I)


class Cults3DAdapter(HttpAdapter):
    platform_id = "cults3d"
    default_base_url = "https://cults3d.com"
    default_rate_limit = RateLimit(1, 1.0)  # 60 per window (window unconfirmed): 1/s and the reset header
    hosts = ("cults3d.com", "files.cults3d.com", "fbi.cults3d.com")

    def _auth(self) -> dict[str, str]:
        user, key = self.credential("username"), self.credential()
        if not (user and key):
            raise self.missing_credential("CULTS3D_USERNAME and CULTS3D_API_KEY (HTTP Basic)")
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}

    async def _query(self, operation: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request(self.platform_id, "POST", self.api("/graphql"), auth=self._auth(),
                                           json={"query": query, "variables": variables, "operationName": operation},
                                           headers={"Accept": "application/json"})
        body = response.json()
        if body.get("errors"):
            message = "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e, dict))
            raise PlatformError(f"cults3d GraphQL error: {message}", platform=self.platform_id,
                                reason="platform_error", kind="permanent")
        return body.get("data") or {}

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters()
        page = int(page or 1)
        limit = max(1, min(filters.per_page, 100))
        data = await self._query("SearchCreations", SEARCH_QUERY,
                                 {"query": query, "limit": limit, "offset": (page - 1) * limit})
        batch = data.get("creationsSearchBatch") or {}
        total = int(batch.get("total") or 0)
        results = [self._creation(c) for c in batch.get("results") or [] if isinstance(c, dict)]
        more = bool(results) and page * limit < total
        return SearchPage(results=results, page=page, total=total, next_page=page + 1 if more else None)

    def _creation(self, raw: dict[str, Any]) -> ModelMetadata:
        files = [ModelFile(file_id=str(b.get("id")), name=str(b.get("fileName") or ""),
                           download_url=str(b.get("fileUrl") or ""),
                           format=model_format(str(b.get("fileName") or ""))
                           or ("zip" if is_archive_name(str(b.get("fileName") or "")) else ""))
                 for b in raw.get("blueprints") or [] if isinstance(b, dict)]
        price = (raw.get("price") or {}).get("cents") or 0
        return ModelMetadata(
            platform=self.platform_id,
            source_id=str(raw.get("slug")),
            title=str(raw.get("name") or ""),
            author=str((raw.get("creator") or {}).get("nick") or ""),
            description=str(raw.get("description") or ""),
            source_url=str(raw.get("url") or ""),
            license=licenses.cults3d(raw.get("license")),
            tags=[str(t) for t in raw.get("tags") or []],
            files=[f for f in files if f.format],
            created_at=str(raw.get("publishedAt") or ""),
            extra={"price_cents": price},
        )

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        data = await self._query("Creation", DETAIL_QUERY, {"slug": source_id})
        if not data.get("creation"):
            raise PlatformError(f"cults3d: no creation {source_id!r}", platform=self.platform_id, status_code=200,
                                reason="not_found", kind="permanent")
        return self._creation(data["creation"])

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        meta = await self.get_metadata(source_id)  # file URLs are read right before use
        files = [f for f in meta.files if file_id in (None, f.file_id)]
        if not files:
            raise DownloadError(f"cults3d creation {source_id} has no such model file", reason="no_model_file",
                                kind="permanent")
        chosen = files[0]
        if not chosen.download_url:
            raise self.unavailable(f"the API gives no file URL for {source_id}/{chosen.name} (blueprints.fileUrl "
                                   "is null: not downloadable through the API for this account)")
        got = await self.fetch(chosen.download_url, target_dir, chosen.name)
        return self.finish(got, target_dir)

    def parse_url(self, url: str) -> str | None:
        match = _URL_RE.match(url.strip())
        return match.group(1) if match else None
