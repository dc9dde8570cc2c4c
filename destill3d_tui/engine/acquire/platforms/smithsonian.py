"""Smithsonian 3D API (``shared/platforms/smithsonian.md``) with the Open Access API for licences.

``/content/file/search`` answers one row per *file* (qualities and usages of a 3D package), so
rows are grouped by ``model_url`` (``3d_package:<uuid>``) into one model. Files are public
(``content.uri``). The 3D API carries no licence: with ``SMITHSONIAN_API_KEY`` the Open Access
API's media entry for the package gives its ``usage.access`` (``CC0``); without a key the licence
stays unknown, and unknown is never free.

The API documents ``q`` as free text, not as a way to find a package by its id: what a search
learned (the package's files and their ``content.uri``, the EDAN record id) travels with the
queue item (:meth:`complete` adds the licence from the Open Access ``/content/{id}`` endpoint,
:meth:`download` reads the files from the queue row's metadata). Searching ``q=<uuid>`` is only
the last resort of :meth:`get_metadata`, for a package known by nothing but a page URL.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ... import licenses
from ...archive import model_format
from ...errors import DownloadError, PlatformError
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter

_UUID = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_URL_RES = (re.compile(rf"3d_package:{_UUID}", re.I), re.compile(rf"3d\.si\.edu/object/3d/(?:[^/:]*:)?{_UUID}", re.I))


def _rank(row: dict[str, Any]) -> tuple[int, int]:
    """Best file first: an undracoed Medium/High viewer GLB, then watertight STL, then the OBJ zip."""
    content = row.get("content") or {}
    draco = str(content.get("draco_compressed", "false")).lower() == "true"
    quality = str(content.get("quality", ""))
    uri = str(content.get("uri", "")).lower()
    if uri.endswith(".glb") and not draco:
        return 0, {"Medium": 0, "High": 1, "Low": 2}.get(quality, 3)
    if uri.endswith(".stl"):
        return 1, 0
    if uri.endswith(".zip"):
        return 2, 0
    return 9, 0


class SmithsonianAdapter(HttpAdapter):
    platform_id = "smithsonian"
    default_base_url = "https://3d-api.si.edu/api/v1.0"
    default_rate_limit = RateLimit(1, 1.0)  # none documented: stay polite
    hosts = ("3d-api.si.edu", "api.si.edu")
    files_are_models = False  # rows of a package are versions of one model
    reads_queue_metadata = True  # download() takes the files the search found from the queue row

    def __init__(self, settings: Any = None, http: Any = None, emit: Any = None) -> None:
        super().__init__(settings, http, emit)
        configured = self.settings.platform(self.platform_id).base_url
        # a mirror (or test server) serves the Open Access API under its base URL
        self.oa_base = (configured.rstrip("/") + "/openaccess") if configured else \
            "https://api.si.edu/openaccess/api/v1.0"

    async def _rows(self, query: str, start: int, rows: int) -> dict[str, Any]:
        body, _ = await self.get_json(self.api("/content/file/search"),
                                      params={"q": query, "start": start, "rows": rows})
        return body

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters()
        page = int(page or 1)
        rows = max(1, min(filters.per_page, 100))
        body = await self._rows(query, (page - 1) * rows, rows)
        total = int(body.get("rowCount") or 0)
        results = self._group(body.get("rows") or [])
        more = page * rows < total
        return SearchPage(results=results, page=page, total=total, next_page=page + 1 if more else None)

    def _group(self, rows: list[dict[str, Any]]) -> list[ModelMetadata]:
        models: dict[str, ModelMetadata] = {}
        for row in sorted((r for r in rows if isinstance(r, dict)), key=_rank):
            content = row.get("content") or {}
            match = _URL_RES[0].search(str(content.get("model_url", "")))
            if not match:
                continue
            uuid = match.group(1).lower()
            meta = models.get(uuid)
            if meta is None:
                meta = models[uuid] = ModelMetadata(
                    platform=self.platform_id, source_id=uuid, title=str(row.get("title") or ""),
                    author="Smithsonian Institution", source_url=f"https://3d.si.edu/object/3d/{uuid}",
                    extra={"edan_id": str(row.get("url") or ""), "needs_detail": True})
            uri = str(content.get("uri") or "")
            name = uri.rsplit("/", 1)[-1]
            fmt = model_format(name) or ("zip" if name.lower().endswith(".zip") else "")
            if fmt and _rank(row)[0] < 9:
                meta.files.append(ModelFile(file_id=name, name=name, download_url=uri, format=fmt))
        return list(models.values())

    async def _license(self, edan_id: str, uuid: str) -> licenses.LicenseInfo:
        key = self.credential()
        if not key or not edan_id:
            return licenses.LicenseInfo(raw="unknown (no Smithsonian Open Access key to check it)", spdx="")
        body, _ = await self.get_json(f"{self.oa_base}/content/{edan_id}", params={"api_key": key})
        record = body.get("response") or {}
        if isinstance(record.get("rows"), list):
            record = next((r for r in record["rows"] if r.get("url") == edan_id), {})
        media = (((record.get("content") or {}).get("descriptiveNonRepeating") or {}).get("online_media") or {})
        for entry in media.get("media") or []:
            if uuid in str(entry.get("idsId", "")) or uuid in str(entry.get("content", "")):
                return licenses.smithsonian((entry.get("usage") or {}).get("access"))
        return licenses.LicenseInfo(raw="no media entry for this 3D package", spdx="")

    async def complete(self, meta: ModelMetadata) -> ModelMetadata:
        """A search result made ready to queue: its licence, from the Open Access record the row named."""
        meta.license = await self._license(str(meta.extra.get("edan_id", "")), meta.source_id.lower())
        meta.extra["needs_detail"] = False
        return meta

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        """A package known only by its id (a page URL): the search is asked for the id as text,
        which the API does not promise to find; results queued from a search never come here."""
        uuid = source_id.lower()
        body = await self._rows(uuid, 0, 100)
        found = [m for m in self._group(body.get("rows") or []) if m.source_id == uuid]
        if not found:
            raise PlatformError(f"smithsonian: no 3D package {uuid}", platform=self.platform_id, reason="not_found",
                                kind="permanent")
        meta = found[0]
        meta.license = await self._license(str(meta.extra.get("edan_id", "")), uuid)
        meta.extra["needs_detail"] = False
        return meta

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None, *,
                       known: dict[str, Any] | None = None) -> DownloadResult:
        """The package's best file, from the files its search result carried (``known``, the queue
        row's metadata); a package queued without them is looked up with :meth:`get_metadata`."""
        files = _known_files(known)
        if not files:
            files = (await self.get_metadata(source_id)).files
        if file_id is not None:
            files = [f for f in files if f.file_id == file_id]
        if not files:
            what = f"file {file_id}" if file_id else f"package {source_id}"
            raise DownloadError(f"smithsonian {what} has no usable model file", reason="no_model_file",
                                kind="permanent")  # fmt: skip
        chosen = files[0]
        got = await self.fetch(chosen.download_url, target_dir, chosen.name)
        return self.finish(got, target_dir)

    def parse_url(self, url: str) -> str | None:
        if "si.edu" not in url and not url.startswith("3d_package:"):
            return None
        for pattern in _URL_RES:
            if match := pattern.search(url):
                return match.group(1).lower()
        return None


def _known_files(known: dict[str, Any] | None) -> list[ModelFile]:
    """The files a search result carried into the queue row (``metadata["files"]``), best first."""
    rows = (known or {}).get("files") or []
    files = [ModelFile(**{k: f.get(k) for k in ("file_id", "name", "size", "download_url", "format")})
             for f in rows if isinstance(f, dict) and f.get("download_url")]  # fmt: skip
    return [f for f in files if f.file_id and f.name]
