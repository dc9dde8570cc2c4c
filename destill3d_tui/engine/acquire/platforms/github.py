"""GitHub REST API (``shared/platforms/github.md``): repositories and the 3D files in their trees.

Search finds repositories (``/search/repositories``; code search only finds text files under
384 KB, so it is opt-in with ``filters.extra["mode"] = "code"``). A repository's model files come
from one recursive tree call; each file is downloaded through the contents API's fresh
``download_url``. Git LFS pointers are recognised and replaced by the LFS object from the media
host, checked against the pointer's sha256 and size.

Source ids: ``"owner/repo"`` (a repository) or ``"owner/repo@ref:path"`` (one file).
Rate limits arrive in ``x-ratelimit-*`` headers and are honoured by the HTTP layer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import licenses
from ...archive import MODEL_EXTENSIONS, model_format
from ...errors import DownloadError
from ..base import DownloadResult, ModelFile, ModelMetadata, RateLimit, SearchFilters, SearchPage
from .common import HttpAdapter

SEARCH_CAP = 1000
LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
_RESERVED = {"orgs", "topics", "settings", "search", "marketplace", "explore", "sponsors", "features", "about"}
_BLOB_RE = re.compile(r"^https?://(?:www\.)?github\.com/([\w.-]+)/([\w.-]+)/(?:blob|raw)/([^/]+)/(.+?)(?:[?#].*)?$")
_TREE_RE = re.compile(r"^https?://(?:www\.)?github\.com/([\w.-]+)/([\w.-]+)/tree/([^/]+)(?:/(.*?))?/?(?:[?#].*)?$")
_RAW_RE = re.compile(r"^https?://raw\.githubusercontent\.com/([\w.-]+)/([\w.-]+)/([^/]+)/(.+?)(?:[?#].*)?$")
_REPO_RE = re.compile(r"^https?://(?:www\.)?github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?(?:[?#].*)?$")


class GitHubAdapter(HttpAdapter):
    platform_id = "github"
    default_base_url = "https://api.github.com"
    # 30/min fits the search bucket, and is far under the 5 000/h core bucket
    default_rate_limit = RateLimit(1, 2.0)
    hosts = ("api.github.com", "raw.githubusercontent.com", "media.githubusercontent.com",
             "objects.githubusercontent.com")

    def __init__(self, settings: Any = None, http: Any = None, emit: Any = None) -> None:
        if not (settings and settings.platform("github").rate_limit) and not _token():
            self.default_rate_limit = RateLimit(60, 3600.0)  # unauthenticated: 60 per hour per IP
        super().__init__(settings, http, emit)
        configured = self.settings.platform(self.platform_id).base_url
        # A mirror (or a test server) serves LFS media under its base URL; GitHub itself on its media host.
        self.media_base = (configured.rstrip("/") + "/media") if configured else "https://media.githubusercontent.com/media"

    def _headers(self) -> dict[str, str]:
        return {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}

    def _auth(self) -> dict[str, str] | None:
        token = self.credential()
        return {"Authorization": f"Bearer {token}"} if token else None

    async def _get(self, path: str, **params: Any) -> tuple[Any, Any]:
        return await self.get_json(self.api(path), params=params or None, headers=self._headers(), auth=self._auth())

    # ------------------------------------------------------------ search

    async def search(self, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters()
        page = int(page or 1)
        per_page = max(1, min(filters.per_page, 100))
        code = filters.extra.get("mode") == "code"
        body, response = await self._get("/search/code" if code else "/search/repositories", q=query,
                                         per_page=per_page, page=page)
        items = body.get("items") or []
        results = [self._code_hit(i) if code else self._repo(i) for i in items if isinstance(i, dict)]
        more = 'rel="next"' in response.headers.get("link", "") and page * per_page < SEARCH_CAP
        return SearchPage(results=results, page=page, total=body.get("total_count"),
                          next_page=page + 1 if more else None)

    def _repo(self, raw: dict[str, Any]) -> ModelMetadata:
        return ModelMetadata(
            platform=self.platform_id,
            source_id=str(raw.get("full_name")),
            title=str(raw.get("name") or ""),
            author=str((raw.get("owner") or {}).get("login") or ""),
            description=str(raw.get("description") or ""),
            source_url=str(raw.get("html_url") or ""),
            license=licenses.github(raw.get("license")),
            tags=[str(t) for t in raw.get("topics") or []],
            created_at=str(raw.get("created_at") or ""),
            modified_at=str(raw.get("pushed_at") or ""),
            extra={"default_branch": raw.get("default_branch") or "", "needs_detail": "license" not in raw},
        )

    def _code_hit(self, raw: dict[str, Any]) -> ModelMetadata:
        repo = raw.get("repository") or {}
        html = str(raw.get("html_url") or "")
        parsed = self.parse_url(html) or f"{repo.get('full_name')}@HEAD:{raw.get('path')}"
        meta = self._repo(repo)
        meta.source_id = parsed
        meta.title = str(raw.get("name") or meta.title)
        meta.source_url = html
        meta.license.raw, meta.license.spdx = "", ""  # code hits carry no licence: read the repository
        meta.extra["needs_detail"] = True
        return meta

    # ------------------------------------------------------------ metadata

    @staticmethod
    def _split(source_id: str) -> tuple[str, str | None, str | None]:
        repo, _, rest = source_id.partition("@")
        if not rest:
            return repo, None, None
        ref, _, path = rest.partition(":")
        return repo, ref, path or None

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        repo, ref, path = self._split(source_id)
        raw, _ = await self._get(f"/repos/{repo}")
        meta = self._repo(raw)
        meta.extra["needs_detail"] = False
        ref = ref or str(raw.get("default_branch") or "HEAD")
        if path and not path.endswith("/"):
            meta.source_id = source_id
            meta.title = path.rsplit("/", 1)[-1]
            meta.files = [ModelFile(file_id=path, name=meta.title, format=model_format(path))]
            return meta
        tree, _ = await self._get(f"/repos/{repo}/git/trees/{quote(ref, safe='')}", recursive="1")
        meta.extra["truncated_tree"] = bool(tree.get("truncated"))
        prefix = path or ""
        meta.files = [
            ModelFile(file_id=e["path"], name=e["path"].rsplit("/", 1)[-1], size=e.get("size"),
                      format=model_format(e["path"]))
            for e in tree.get("tree") or []
            if e.get("type") == "blob" and e.get("path", "").lower().endswith(MODEL_EXTENSIONS)
            and e["path"].startswith(prefix)
        ]
        meta.source_id = f"{repo}@{ref}:{prefix}" if prefix else repo
        meta.extra["ref"] = ref
        return meta

    # ------------------------------------------------------------ download

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        repo, ref, path = self._split(source_id)
        path = file_id or path
        if not path or path.endswith("/"):
            meta = await self.get_metadata(source_id)
            if not meta.files:
                raise DownloadError(f"{repo} has no model files", reason="no_model_file", kind="permanent")
            path, ref = meta.files[0].file_id, meta.extra.get("ref")
        params = {"ref": ref} if ref and ref != "HEAD" else {}
        record, _ = await self._get(f"/repos/{repo}/contents/{quote(path)}", **params)
        if not isinstance(record, dict) or record.get("type") != "file" or not record.get("download_url"):
            raise DownloadError(f"{repo}:{path} is not a downloadable file", reason="no_model_file",
                                kind="permanent")
        name = str(record.get("name") or path.rsplit("/", 1)[-1])
        got = await self.fetch(str(record["download_url"]), target_dir, name, expected_size=record.get("size"))
        pointer = _lfs_pointer(got.path)
        if pointer is not None:
            oid, size = pointer
            got.path.unlink()
            media = f"{self.media_base}/{repo}/{quote(ref or 'HEAD', safe='')}/{quote(path)}"
            got = await self.fetch(media, target_dir, name, expected_size=size)
            if got.sha256 != oid:
                got.path.unlink(missing_ok=True)
                raise DownloadError(f"{repo}:{path}: LFS object does not match its pointer's sha256",
                                    reason="truncated")
        return self.finish(got, target_dir)

    # ------------------------------------------------------------ URLs

    def parse_url(self, url: str) -> str | None:
        url = url.strip()
        for pattern in (_BLOB_RE, _RAW_RE):
            if (match := pattern.match(url)) and match.group(1) not in _RESERVED:
                owner, repo, ref, path = match.groups()
                return f"{owner}/{repo}@{ref}:{path}"
        if (match := _TREE_RE.match(url)) and match.group(1) not in _RESERVED:
            owner, repo, ref, path = match.groups()
            return f"{owner}/{repo}@{ref}:{path.rstrip('/') + '/' if path else ''}"
        if (match := _REPO_RE.match(url)) and match.group(1) not in _RESERVED:
            return f"{match.group(1)}/{match.group(2)}"
        return None


def _token() -> str | None:
    from .. import credentials

    return credentials.get("github")


def _lfs_pointer(path: Path) -> tuple[str, int] | None:
    """(sha256 oid, size) when ``path`` is a Git LFS pointer file, else None."""
    if path.stat().st_size > 1024:
        return None
    text = path.read_bytes()
    if not text.startswith(LFS_MAGIC):
        return None
    fields = dict(line.split(" ", 1) for line in text.decode("utf-8", "replace").splitlines() if " " in line)
    oid = fields.get("oid", "").removeprefix("sha256:")
    try:
        return oid, int(fields.get("size", ""))
    except ValueError:
        return None
