"""The ``local`` platform: files and folders on this machine.

It never copies, moves or deletes the user's files: ``download`` only reads the file to hash
it, and its :class:`DownloadResult` names the original path as ``primary``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from ...errors import DownloadError
from ..base import DownloadResult, ModelMetadata, RateLimit, SearchFilters, SearchPage

_CHUNK = 1 << 20  # hashing reads 1 MiB at a time: bounded memory for multi-GB scans


def sha256_file(path: Path) -> tuple[str, int]:
    """sha256 hex digest and size of a file."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class LocalAdapter:
    platform_id = "local"
    rate_limit = RateLimit(1_000_000, 1.0)  # local disk: no budget to respect

    def __init__(self, settings: Any = None, http: Any = None) -> None:
        self.settings = settings

    async def search(self, query: str, filters: SearchFilters, page: Any = 1) -> SearchPage:
        """``query`` is a folder (or a glob below one); results are the model files in it."""
        from ...queue import local_entries

        base = Path(query).expanduser()
        pattern = None
        if not base.exists() and any(ch in base.name for ch in "*?["):
            base, pattern = base.parent, base.name
        entries = await asyncio.to_thread(local_entries, [base], True, pattern)
        per_page = max(1, filters.per_page)
        start = (int(page) - 1) * per_page
        chosen = entries[start : start + per_page]
        results = [self._metadata(Path(e.source_id)) for e in chosen]
        more = start + per_page < len(entries)
        return SearchPage(
            results=results, page=int(page), total=len(entries), next_page=int(page) + 1 if more else None
        )

    async def get_metadata(self, source_id: str) -> ModelMetadata:
        path = self._existing(source_id)
        return self._metadata(path)

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult:
        path = self._existing(source_id)
        sha, size = await asyncio.to_thread(sha256_file, path)
        return DownloadResult(
            primary=path, files=[path], sha256=sha, bytes_downloaded=size, metadata=self._metadata(path)
        )

    def parse_url(self, url: str) -> str | None:
        if url.startswith("file://"):
            return str(_from_uri(url).resolve())
        if "://" not in url and Path(url).expanduser().exists():
            return str(Path(url).expanduser().resolve())
        return None

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _existing(source_id: str) -> Path:
        # queue.local_entries gives names that are not UTF-8 as file URIs (see there)
        path = _from_uri(source_id) if source_id.startswith("file://") else Path(source_id).expanduser()
        if not path.is_file():
            raise DownloadError(
                f"{path}: the file is gone or is not a regular file", reason="source_gone", kind="permanent"
            )
        return path

    @staticmethod
    def _metadata(path: Path) -> ModelMetadata:
        from ...text import display, encodable

        source_id = str(path) if encodable(str(path)) else path.as_uri()
        return ModelMetadata(platform="local", source_id=source_id, title=display(path.stem), source_url=path.as_uri())


def _from_uri(url: str) -> Path:
    """``file:///a/b%FF.stl`` -> the path with those exact bytes (not-UTF-8 bytes surrogate-escaped)."""
    return Path(os.fsdecode(unquote_to_bytes(urlparse(url).path)))
