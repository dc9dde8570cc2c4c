"""The PlatformAdapter protocol and the values adapters exchange with the pipeline.

Adapters are registered through the ``destill3d.platforms`` entry point group (the built-in
ones too); :func:`registry.get_adapter` finds them by ``platform_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..licenses import LicenseInfo


@dataclass
class ModelFile:
    """One downloadable file of a model (a Thingiverse thing has several)."""

    file_id: str
    name: str
    size: int | None = None
    download_url: str = ""  # may be time-limited: fetch fresh just before use
    format: str = ""


@dataclass
class ModelMetadata:
    platform: str
    source_id: str
    title: str = ""
    author: str = ""
    description: str = ""
    source_url: str = ""
    license: LicenseInfo = field(default_factory=LicenseInfo)
    tags: list[str] = field(default_factory=list)
    files: list[ModelFile] = field(default_factory=list)
    created_at: str = ""
    modified_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchPage:
    results: list[ModelMetadata]
    page: int = 1
    total: int | None = None
    next_page: Any = None  # page number, cursor or URL; None when this is the last page


@dataclass
class SearchFilters:
    license_policy: str = "research"  # research | commercial | any
    formats: list[str] = field(default_factory=list)
    sort: str = "relevant"
    per_page: int = 20
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DownloadResult:
    """Files an adapter put in ``target_dir``; ``primary`` is the model file to extract."""

    primary: Path
    files: list[Path]
    sha256: str
    bytes_downloaded: int
    metadata: ModelMetadata | None = None


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """'300/5min', '1000/day', '10/s' -> RateLimit."""
        count, _, window = text.partition("/")
        units = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hour": 3600, "day": 86400}
        window = window.strip().lower()
        digits = "".join(ch for ch in window if ch.isdigit() or ch == ".")
        unit = window[len(digits) :] or "s"
        if unit not in units:
            raise ValueError(f"rate limit {text!r}: unknown unit {unit!r}")
        return cls(int(count), float(digits or 1) * units[unit])


@runtime_checkable
class PlatformAdapter(Protocol):
    platform_id: str
    rate_limit: RateLimit

    async def search(self, query: str, filters: SearchFilters, page: Any = 1) -> SearchPage: ...

    async def get_metadata(self, source_id: str) -> ModelMetadata: ...

    async def download(self, source_id: str, target_dir: Path, file_id: str | None = None) -> DownloadResult: ...

    def parse_url(self, url: str) -> str | None:
        """The source id in a model-page URL of this platform, or None if it is not one."""
        ...
