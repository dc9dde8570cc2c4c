"""The ``local`` platform: files and folders on this machine.

It never copies, moves or deletes the user's files: ``download`` only reads the file to hash
it, and its :class:`DownloadResult` names the original path as ``primary``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

from ...archive import is_archive_name
from ...errors import DownloadError, NotFoundError
from ...formats import EXTENSIONS
from ...text import display, encodable
from ..base import DownloadResult, ModelMetadata, RateLimit, SearchFilters, SearchPage

_CHUNK = 1 << 20  # hashing reads 1 MiB at a time: bounded memory for multi-GB scans


def model_files(paths: Iterable[str | Path], recursive: bool = False, pattern: str | None = None) -> list[Path]:
    """The files a scan of ``paths`` finds: a file as given, a folder's model files and archives
    (``pattern``: a glob on the file name instead), sorted per folder."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            files = path.rglob("*") if recursive else path.glob("*")
            # Symlinks are not followed in a scan: a link may point anywhere on the machine.
            found.extend(sorted(f for f in files if f.is_file() and not f.is_symlink() and _wanted(f, pattern)))
        elif path.exists():
            found.append(path)
        else:
            raise NotFoundError(f"{raw}: no such file or folder")
    return found


def _wanted(path: Path, pattern: str | None) -> bool:
    if pattern:
        return fnmatch.fnmatch(path.name.lower(), pattern.lower())
    # The formats extraction reads (one list for CLI, queue and search); archives become one
    # pipeline item per model inside.
    readable = path.suffix.lower() in EXTENSIONS or is_archive_name(path.name)
    return readable and not path.name.startswith(".")


def source_id_for(path: Path) -> str:
    """The path itself; a name that is not valid UTF-8 cannot be a database string, so its
    source id is then the percent-encoded file URI (:meth:`LocalAdapter.download` turns it back
    into the same bytes)."""
    return str(path) if encodable(str(path)) else path.as_uri()


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
        base = Path(query).expanduser()
        pattern = None
        if not base.exists() and any(ch in base.name for ch in "*?["):
            base, pattern = base.parent, base.name
        files = await asyncio.to_thread(model_files, [base], True, pattern)
        per_page = max(1, filters.per_page)
        start = (int(page) - 1) * per_page
        results = [self._metadata(path) for path in files[start : start + per_page]]
        more = start + per_page < len(files)
        return SearchPage(
            results=results, page=int(page), total=len(files), next_page=int(page) + 1 if more else None
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
        # names that are not UTF-8 come as file URIs (source_id_for)
        path = _from_uri(source_id) if source_id.startswith("file://") else Path(source_id).expanduser()
        if not path.is_file():
            raise DownloadError(
                f"{path}: the file is gone or is not a regular file", reason="source_gone", kind="permanent"
            )
        return path

    @staticmethod
    def _metadata(path: Path) -> ModelMetadata:
        return ModelMetadata(
            platform="local", source_id=source_id_for(path), title=display(path.stem), source_url=path.as_uri()
        )


def _from_uri(url: str) -> Path:
    """``file:///a/b%FF.stl`` -> the path with those exact bytes (not-UTF-8 bytes surrogate-escaped)."""
    return Path(os.fsdecode(unquote_to_bytes(urlparse(url).path)))
