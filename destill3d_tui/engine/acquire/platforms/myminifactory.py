"""MyMiniFactory API v2 (``shared/platforms/myminifactory.md``).

``?key=<api key>`` for search and metadata; licences are boolean flags per object. File download
URLs are only filled for an OAuth user (``Authorization: Bearer``): without one the adapter says so
instead of scraping the web site. About 5 req/s is tolerated (nginx); paced at 2/s, 429 and 503
both treated as throttling.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ... import licenses
from ...archive import is_archive_name, model_format
from ...errors import DownloadError, PlatformError
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter, int_or_none

SORTS = {"visits", "date", "popularity"}
_URL_RE = re.compile(r"^https?://(?:www\.)?myminifactory\.com/object/3d-print-[\w-]*?-?(\d+)/?(?:[?#].*)?$", re.I)


class MyMiniFactoryAdapter(HttpAdapter):
    platform_id = "myminifactory"
    default_base_url = "https://www.myminifactory.com/api/v2"
    default_rate_limit = RateLimit(2, 1.0)
    hosts = ("www.myminifactory.com", "dl.myminifactory.com", "cdn.myminifactory.com")

    def _key(self) -> dict[str, str]:
        return {"key": self.required_credential("an API key")}

    async def _get(self, path: str, **params: Any) -> Any:
        body, _ = await self.get_json(self.api(path), params={**params, **self._key()},
                                      headers={"Accept": "application/json"})
        return body

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters()
        page = int(page or 1)
        per_page = max(1, min(filters.per_page, 100))
        params: dict[str, Any] = {"q": query, "page": page, "per_page": per_page}
        if filters.sort in SORTS:
            params["sort"] = filters.sort
        if filters.license_policy == "commercial":
            params["commercial_use"] = 1
        body = await self._get("/search", **params)
        total = int(body.get("total_count") or 0)
        results = [self._object(o) for o in body.get("items") or [] if isinstance(o, dict)]
        more = bool(results) and page * per_page < total
        return SearchPage(results=results, page=page, total=total, next_page=page + 1 if more else None)

    def _object(self, raw: dict[str, Any]) -> ModelMetadata:
        files = (raw.get("files") or {}).get("items") if isinstance(raw.get("files"), dict) else raw.get("files")
        return ModelMetadata(
            platform=self.platform_id,
            source_id=str(raw.get("id")),
            title=str(raw.get("name") or ""),
            author=str((raw.get("designer") or {}).get("username") or ""),
            description=str(raw.get("description") or ""),
            source_url=str(raw.get("url") or ""),
            license=licenses.myminifactory(raw.get("licenses"), str(raw.get("license") or "")),
            tags=[str(t) for t in raw.get("tags") or []],
            files=[f for f in (self._file(f) for f in files or [] if isinstance(f, dict)) if f.format],
            created_at=str(raw.get("published_at") or ""),
        )

    @staticmethod
    def _file(raw: dict[str, Any]) -> ModelFile:
        name = str(raw.get("filename") or "")
        fmt = model_format(name) or ("zip" if is_archive_name(name) else "")
        return ModelFile(file_id=str(raw.get("id")), name=name, size=raw.get("size"),
                         download_url=str(raw.get("download_url") or ""), format=fmt)

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        return self._object(await self._get(f"/objects/{source_id}"))

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        # download URLs go only to OAuth users: an API key gets download_url: null
        auth = self.bearer("an OAuth token to download (an API key gets no download URLs)", "oauth")
        if file_id is None:
            meta = await self.get_metadata(source_id)
            if not meta.files:
                raise DownloadError(f"object {source_id} has no model files", reason="no_model_file",
                                    kind="permanent")
            file_id = meta.files[0].file_id
        accept = {"Accept": "application/json"}
        record, _ = await self.get_json(self.api(f"/files/{file_id}"), auth=auth, headers=accept)
        info = self._file(record)
        if not info.download_url:
            raise PlatformError(f"myminifactory returned no download_url for file {file_id} (OAuth token refused?)",
                                platform=self.platform_id, reason="auth_failed", kind="permanent")
        got = await self.fetch(info.download_url, target_dir, info.name, expected_size=int_or_none(info.size),
                               auth=auth)
        return self.finish(got, target_dir)

    def parse_url(self, url: str) -> str | None:
        match = _URL_RE.match(url.strip())
        return match.group(1) if match else None
