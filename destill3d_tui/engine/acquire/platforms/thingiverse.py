"""Thingiverse REST API v1 (``shared/platforms/thingiverse.md``).

Bearer token on every call; 300 requests / 5 min (paced at <= 1 request/s); search answers
``{total, hits}`` (capped at 10 000 results) and has no licence, so licences come from
``/things/{id}``; a thing has several files (one queue item per model file, grouped by thing);
downloads go through ``/files/{id}/download`` (302 to the CDN, fetched fresh each time). A zip
file is kept as downloaded: the pipeline lists it in the isolated extraction worker and makes
one item per model file inside (``pipeline/archives.py``).

Source ids: ``"5823117"`` (a thing), ``"5823117:12093311"`` (one file of a thing),
``"file:12093311"`` (a file whose thing is unknown: a ``download:`` URL).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ... import licenses
from ...archive import is_archive_name, model_format
from ...errors import DownloadError
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter, int_or_none

SEARCH_CAP = 10_000
SORTS = {"relevant", "text", "popular", "makes", "newest"}

_THING_RE = re.compile(r"^https?://(?:www\.)?thingiverse\.com/thing:(\d+)", re.I)
_FILE_RE = re.compile(r"^https?://(?:www\.)?thingiverse\.com/download:(\d+)", re.I)
_API_RE = re.compile(r"^https?://api\.thingiverse\.com/things/(\d+)", re.I)


class ThingiverseAdapter(HttpAdapter):
    platform_id = "thingiverse"
    default_base_url = "https://api.thingiverse.com"
    # documented 300 / 5 min: pace at 1/s, which never exceeds it
    default_rate_limit = RateLimit(1, 1.0)
    hosts = ("api.thingiverse.com", "cdn.thingiverse.com", "www.thingiverse.com")

    def _auth(self) -> dict[str, str]:
        return self.bearer("an app token")

    async def _get(self, path: str, **params: Any) -> tuple[Any, Any]:
        return await self.get_json(self.api(path), params=params or None, auth=self._auth(),
                                   headers={"Accept": "application/json"})

    # ------------------------------------------------------------ search

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters()
        page = int(page or 1)
        per_page = max(1, min(filters.per_page, 100))
        params: dict[str, Any] = {"type": "things", "page": page, "per_page": per_page}
        if filters.sort in SORTS:
            params["sort"] = filters.sort
        code = licenses.THINGIVERSE_SEARCH_CODES.get(str(filters.extra.get("license_spdx", "")))
        if code:
            params["license"] = code
        path = f"/search/{quote(query.strip(), safe='')}/" if query.strip() else "/search/"
        body, _ = await self._get(path, **params)
        total = int(body.get("total") or 0)
        hits = body.get("hits") or []
        results = [self._short(hit) for hit in hits]
        more = hits and page * per_page < min(total, SEARCH_CAP)
        return SearchPage(results=results, page=page, total=total, next_page=page + 1 if more else None)

    def _short(self, hit: dict[str, Any]) -> ModelMetadata:
        thing_id = str(hit.get("id"))
        return ModelMetadata(
            platform=self.platform_id,
            source_id=thing_id,
            title=str(hit.get("name") or ""),
            author=str((hit.get("creator") or {}).get("name") or ""),
            source_url=str(hit.get("public_url") or f"https://www.thingiverse.com/thing:{thing_id}"),
            license=licenses.thingiverse(hit.get("license")),  # search hits carry none: unknown
            tags=[str(t.get("name")) for t in hit.get("tags") or [] if isinstance(t, dict)],
            created_at=str(hit.get("created_at") or ""),
            extra={"needs_detail": "license" not in hit, "thumbnail": hit.get("thumbnail") or ""},
        )

    # ------------------------------------------------------------ metadata

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        thing_id, file_id = self._split(source_id)
        if thing_id is None:
            file = (await self._get(f"/files/{file_id}"))[0]
            meta = ModelMetadata(platform=self.platform_id, source_id=source_id, title=str(file.get("name", "")),
                                 source_url=f"https://www.thingiverse.com/download:{file_id}")
            meta.files = [self._file(file)]
            return meta
        thing, _ = await self._get(f"/things/{thing_id}")
        files, _ = await self._get(f"/things/{thing_id}/files")
        meta = self._short(thing)
        meta.source_id = thing_id
        meta.description = str(thing.get("description") or "")
        meta.created_at = str(thing.get("added") or meta.created_at)
        meta.modified_at = str(thing.get("modified") or "")
        meta.license = licenses.thingiverse(thing.get("license"))
        meta.extra = {"is_derivative": bool(thing.get("is_derivative")),
                      "ancestors": [a.get("id") for a in thing.get("ancestors") or []]}
        meta.files = [self._file(f) for f in files if isinstance(f, dict)]
        meta.files = [f for f in meta.files if f.format]
        if file_id is not None:
            meta.files = [f for f in meta.files if f.file_id == file_id]
        return meta

    @staticmethod
    def _file(raw: dict[str, Any]) -> ModelFile:
        name = str(raw.get("name") or "")
        fmt = model_format(name) or ("zip" if is_archive_name(name) else "")
        return ModelFile(file_id=str(raw.get("id")), name=name, size=raw.get("size"),
                         download_url=str(raw.get("download_url") or ""), format=fmt)

    # ------------------------------------------------------------ download

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        thing_id, split_file = self._split(source_id)
        file_id = file_id or split_file
        if file_id is None:
            meta = await self.get_metadata(source_id)
            if not meta.files:
                raise DownloadError(f"thing {thing_id} has no model files", reason="no_model_file", kind="permanent")
            file_id = meta.files[0].file_id
        # the file record is read just before use: download URLs are never cached
        record, _ = await self._get(f"/files/{file_id}")
        info = self._file(record)
        if not info.format:
            raise DownloadError(f"thingiverse file {info.name!r} is not a model file", reason="no_model_file",
                                kind="permanent")
        url = info.download_url or self.api(f"/files/{file_id}/download")

        async def refetch() -> str:
            fresh, _ = await self._get(f"/files/{file_id}")
            return str(fresh.get("download_url") or url)

        got = await self.fetch(url, target_dir, info.name, expected_size=int_or_none(info.size), auth=self._auth(),
                               refetch=refetch)
        return self.finish(got, target_dir)

    # ------------------------------------------------------------ URLs

    @staticmethod
    def _split(source_id: str) -> tuple[str | None, str | None]:
        if source_id.startswith("file:"):
            return None, source_id[5:]
        thing, _, file_id = source_id.partition(":")
        return thing, (file_id or None)

    def parse_url(self, url: str) -> str | None:
        url = url.strip()
        if match := _THING_RE.match(url) or _API_RE.match(url):
            thing_id = match.group(1)
            file_id = parse_qs(urlsplit(url).query).get("fileId", [None])[0]
            return f"{thing_id}:{file_id}" if file_id and file_id.isdigit() else thing_id
        if match := _FILE_RE.match(url):
            return f"file:{match.group(1)}"
        parts = urlsplit(url)
        if "thingiverse" in parts.netloc and (m := re.search(r"(?:^|/)thing:(\d+)", parts.path)):
            file_id = parse_qs(parts.query).get("fileId", [None])[0]  # objaverse-xl identifiers
            return f"{m.group(1)}:{file_id}" if file_id and file_id.isdigit() else m.group(1)
        return None
