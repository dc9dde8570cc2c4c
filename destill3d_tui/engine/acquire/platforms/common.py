"""What every HTTP platform adapter shares: settings, the HTTP client, and finishing a download."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...config import Settings
from ...errors import DownloadError, PlatformError
from .. import credentials
from ..archive import ArchiveLimits, choose_model_files, is_archive, model_format, safe_extract
from ..base import DownloadResult, ModelMetadata, RateLimit
from ..http import DownloadedFile, EmitFn, HttpClient


class HttpAdapter:
    """Base of the HTTP adapters; subclasses set the class attributes and implement the protocol."""

    platform_id: str = ""
    default_base_url: str = ""
    default_rate_limit: RateLimit = RateLimit(1, 1.0)
    hosts: tuple[str, ...] = ()  # hosts the API and its file CDN live on (default ports, public)

    def __init__(self, settings: Settings | None = None, http: HttpClient | None = None,
                 emit: EmitFn | None = None) -> None:
        self.settings = settings or Settings()
        configured = self.settings.platform(self.platform_id)
        self.base_url = (configured.base_url or self.default_base_url).rstrip("/")
        self.rate_limit = RateLimit.parse(configured.rate_limit) if configured.rate_limit else self.default_rate_limit
        self.http = http or HttpClient(self.settings, emit=emit)
        self.http.register(self.platform_id, rate_limit=self.rate_limit, hosts=self.hosts,
                           base_url=configured.base_url or self.default_base_url, credential=self.credential())

    # ------------------------------------------------------------ helpers

    def credential(self, field: str = "token") -> str | None:
        return credentials.get(self.platform_id, field)

    def api(self, path: str) -> str:
        return self.base_url + path

    async def get_json(self, url: str, **kwargs: Any) -> tuple[Any, Any]:
        return await self.http.get_json(self.platform_id, url, **kwargs)

    def missing_credential(self, what: str) -> PlatformError:
        """The one error every adapter raises when its credential is not configured (never retried)."""
        return PlatformError(f"{self.platform_id} needs {what}", platform=self.platform_id, reason="auth_failed",
                             kind="permanent")

    def unavailable(self, why: str) -> PlatformError:
        return PlatformError(f"{self.platform_id}: {why}", platform=self.platform_id, reason="platform_unavailable",
                             kind="permanent")

    async def fetch(self, url: str, target_dir: Path, name: str, *, expected_size: int | None = None,
                    auth: dict[str, str] | None = None,
                    refetch: Callable[[], Awaitable[str]] | None = None) -> DownloadedFile:
        return await self.http.download(self.platform_id, url, target_dir, name, auth=auth,
                                        expected_size=expected_size, refetch=refetch)

    def finish(self, downloaded: DownloadedFile, target_dir: Path,
               metadata: ModelMetadata | None = None) -> DownloadResult:
        """Unpack an archive safely (model files only) and pick the primary model file."""
        files = [downloaded.path]
        if is_archive(downloaded.path) and model_format(downloaded.path.name) != "3mf":
            # a run killed while unpacking leaves a partial folder behind: start it afresh
            shutil.rmtree(target_dir / "unpacked", ignore_errors=True)
            unpacked = safe_extract(downloaded.path, target_dir / "unpacked",
                                    ArchiveLimits.from_settings(self.settings.acquisition))
            files = choose_model_files(unpacked)
            if not files:
                raise DownloadError(f"{self.platform_id}: the archive {downloaded.path.name} holds no model file",
                                    reason="no_model_file", kind="permanent")
        elif not model_format(downloaded.path.name):
            raise DownloadError(f"{self.platform_id}: {downloaded.path.name} is not a model file",
                                reason="no_model_file", kind="permanent")
        return DownloadResult(primary=files[0], files=files, sha256=downloaded.sha256,
                              bytes_downloaded=downloaded.size, metadata=metadata)
