"""What every HTTP platform adapter shares: settings, the HTTP client, and finishing a download."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...archive import is_archive, model_format
from ...config import Settings
from ...errors import DownloadError, PlatformError
from .. import credentials
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

    def required_credential(self, what: str, field: str = "token") -> str:
        """The ``field`` credential; when it is not configured, :meth:`missing_credential` saying
        ``what`` it is and how to set it (before any request is made)."""
        value = self.credential(field)
        if not value:
            raise self.missing_credential(what, field)
        return value

    def bearer(self, what: str, field: str = "token") -> dict[str, str]:
        """``Authorization: Bearer`` headers carrying the required ``field`` credential."""
        return {"Authorization": f"Bearer {self.required_credential(what, field)}"}

    def api(self, path: str) -> str:
        return self.base_url + path

    async def get_json(self, url: str, **kwargs: Any) -> tuple[Any, Any]:
        return await self.http.get_json(self.platform_id, url, **kwargs)

    def missing_credential(self, what: str, field: str | None = None) -> PlatformError:
        """The one error every adapter raises when its credential is not configured (never retried);
        given the ``field``, the message says how to set it."""
        how = f": {credentials.how_to_set(self.platform_id, field)}" if field else ""
        return PlatformError(f"{self.platform_id} needs {what}{how}", platform=self.platform_id,
                             reason="auth_failed", kind="permanent")

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
        """The downloaded model file, or the archive as it came: never unpacked here.

        Decompressing is where archive bombs go off, so an archive is unpacked (and its model
        files chosen) by the extraction stage, in its isolated worker under the worker's timeout
        and memory cap (``extract.isolate.extract_item``), never in the runner's download loop.
        """
        path = downloaded.path
        if not model_format(path.name) and not is_archive(path):
            raise DownloadError(f"{self.platform_id}: {path.name} is not a model file or an archive",
                                reason="no_model_file", kind="permanent")
        return DownloadResult(primary=path, files=[path], sha256=downloaded.sha256,
                              bytes_downloaded=downloaded.size, metadata=metadata)


def int_or_none(value: Any) -> int | None:
    """A platform's number (a size, a count) as an int; None where it sent none or not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
