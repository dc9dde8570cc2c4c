"""``Destill3D.acquire`` (:class:`AcquireService`): platforms, search, licence-gated queueing, URLs, budgets.

The adapters are async; these methods are the synchronous face the CLI, the TUI's thread
workers and scripts use. Queueing applies the licence policy (spec 14.3): a result whose
licence is unknown is looked up first (Thingiverse search hits carry none), and anything the
policy refuses is not queued but reported in :attr:`AcquireService.refused`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import licenses
from ..acquire import credentials
from ..acquire.base import ModelMetadata, SearchFilters, SearchPage
from ..acquire.http import RateStatus, rate_status
from ..acquire.registry import adapter_class, adapter_for_url, get_adapter, list_platforms
from ..config import Settings
from ..errors import Destill3DError, PlatformError
from ..events import EventBus
from ..queue import Queue, QueueEntry

T = TypeVar("T")

# Why a platform cannot be used as-is (shown by `acquire list` and the TUI's platform picker).
NEEDS = {
    "thingiverse": ("token", "set THINGIVERSE_API_KEY (an app token) or `config credentials set thingiverse`"),
    "myminifactory": ("token", "set MYMINIFACTORY_API_KEY (downloads also need MYMINIFACTORY_OAUTH_TOKEN)"),
    "cults3d": ("token", "set CULTS3D_USERNAME and CULTS3D_API_KEY"),
}
UNOFFICIAL = {
    "printables": "no public API (URL recognition only)",
    "thangs": "no public API (model detail by URL only; no search or download)",
    "grabcad": "no public API (URL recognition only)",
}


@dataclass
class PlatformInfo:
    platform_id: str
    available: bool
    why: str
    rate_budget: str


@dataclass
class Refusal:
    platform: str
    source_id: str
    title: str
    why: str


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def platform_infos(settings: Settings) -> list[PlatformInfo]:
    """Each registered platform: usable or why not, and its rate budget (no database needed)."""
    out = []
    for name in list_platforms():
        platform = settings.platform(name)
        why = ""
        if not platform.enabled:
            why = "disabled in the settings"
        elif name in UNOFFICIAL:
            why = UNOFFICIAL[name]
        elif name in NEEDS and not _has_credentials(name):
            why = NEEDS[name][1]
        budget = platform.rate_limit or _default_rate(name)
        out.append(PlatformInfo(name, not why, why, budget))
    return out


class AcquireService:
    """``d3d.acquire``: the settings say which platforms and policy; found models go into ``queue``."""

    def __init__(self, settings: Settings, queue: Queue, events: EventBus) -> None:
        self.settings = settings
        self._queue = queue
        self._events = events
        self._adapters: dict[str, Any] = {}
        self.refused: list[Refusal] = []

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on a short-lived loop and close the HTTP connections opened on it."""

        async def closing() -> T:
            try:
                return await coro
            finally:
                for adapter in list(self._adapters.values()):
                    http = getattr(adapter, "http", None)
                    if http is not None:
                        await http.aclose()

        return run_sync(closing())

    def adapter(self, platform: str) -> Any:
        if platform not in self._adapters:
            self._adapters[platform] = get_adapter(platform, self.settings, emit=self._events.emit)
        return self._adapters[platform]

    # ------------------------------------------------------------ platforms

    def platforms(self) -> list[PlatformInfo]:
        return platform_infos(self.settings)

    # ------------------------------------------------------------ search

    def search(self, platform: str, query: str, filters: SearchFilters | None = None, page: Any = 1) -> SearchPage:
        filters = filters or SearchFilters(license_policy=self.settings.acquisition.license_policy)
        return self._run(self.adapter(platform).search(query, filters, page))

    def search_many(self, platform: str, query: str, limit: int, filters: SearchFilters | None = None) -> list[
            ModelMetadata]:
        """Up to ``limit`` results, following the platform's pagination."""
        filters = filters or SearchFilters(license_policy=self.settings.acquisition.license_policy)
        filters.per_page = max(1, min(filters.per_page, limit))
        results: list[ModelMetadata] = []
        page: Any = 1
        while page is not None and len(results) < limit:
            got = self.search(platform, query, filters, page)
            results += got.results
            page = got.next_page if got.results else None
        return results[:limit]

    # ------------------------------------------------------------ queueing

    def queue_results(self, results: Sequence[ModelMetadata], priority: int = 0,
                      policy: str | None = None, only_spdx: str | None = None) -> list[int]:
        """Queue the results the licence policy allows: one row per model file, grouped per model.

        ``only_spdx`` keeps exactly that licence (for platforms whose search cannot filter by it).
        """
        policy = policy or self.settings.acquisition.license_policy
        licenses.why_refused(licenses.LicenseInfo(), policy)  # validates the policy name early
        detailed = self._run(self._detail_all(list(results), policy))
        entries: list[QueueEntry] = []
        for meta in detailed:
            why = licenses.why_refused(meta.license, policy)
            if why is None and only_spdx and meta.license.spdx.lower() != only_spdx.lower():
                why = f"licence {meta.license.spdx or 'unknown'} is not the requested {only_spdx}"
            if why is not None:
                self.refused.append(Refusal(meta.platform, meta.source_id, meta.title, why))
                continue
            entries += self._entries(meta, priority)
        return self._queue.add_entries(entries) if entries else []

    async def _detail_all(self, results: list[ModelMetadata], policy: str) -> list[ModelMetadata]:
        out = []
        for meta in results:
            needs = meta.extra.get("needs_detail") or not meta.files
            if needs and not (policy == "any" and meta.files):
                try:
                    meta = await self._detail(meta)
                except Destill3DError as exc:
                    self.refused.append(Refusal(meta.platform, meta.source_id, meta.title, f"{exc.reason}: {exc}"))
                    continue
            out.append(meta)
        return out

    async def _detail(self, meta: ModelMetadata) -> ModelMetadata:
        """What a search result lacks (a licence), asked of the platform the way it documents.

        An adapter with ``complete(meta)`` finishes the result it found (keeping its files); the
        others look the model up again by id with ``get_metadata``.
        """
        adapter = self.adapter(meta.platform)
        complete = getattr(adapter, "complete", None)
        if complete is not None and meta.files:
            return await complete(meta)
        return await adapter.get_metadata(meta.source_id)

    def _entries(self, meta: ModelMetadata, priority: int) -> list[QueueEntry]:
        adapter = self.adapter(meta.platform)
        per_file = getattr(adapter, "files_are_models", True) and len(meta.files) > 0
        base = {
            "title": meta.title,
            "author": meta.author,
            "license": licenses.flags_dict(meta.license),
            "tags": list(meta.tags),
            "source_url": meta.source_url,
            "created": meta.created_at,
            "description": meta.description[:500],
        }
        if not per_file:  # the files the search found travel with the item: download needs no new lookup
            files = [asdict(f) for f in meta.files]
            return [QueueEntry(model_id=f"{meta.platform}:{meta.source_id}", platform=meta.platform,
                               source_url=meta.source_url, source_id=meta.source_id, priority=priority,
                               metadata={**base, "files": files} if files else base)]
        group = f"{meta.platform}:{meta.source_id}"
        return [
            QueueEntry(model_id=f"{group}:{f.file_id}", platform=meta.platform, source_url=meta.source_url,
                       source_id=meta.source_id, file_id=f.file_id, group_id=group, priority=priority,
                       metadata={**base, "title": f"{meta.title} / {f.name}" if len(meta.files) > 1 else meta.title,
                                 "file_name": f.name, "file_format": f.format, "files": [asdict(f)]})
            for f in meta.files
        ]

    def add_urls(self, urls: Sequence[str], priority: int = 0, policy: str | None = None) -> list[int]:
        """Queue model-page URLs of any platform (or local paths); unknown URLs are an error."""
        ids: list[int] = []
        remote: list[ModelMetadata] = []
        for url in urls:
            found = adapter_for_url(url, self.settings)
            if found is None:
                raise PlatformError(f"no platform recognises {credentials.redact(url)!r}", reason="unsupported_url",
                                    kind="permanent")
            adapter, source_id = found
            if adapter.platform_id == "local":
                ids += self._queue.add_paths([Path(source_id)], priority=priority)
                continue
            meta = self._run(self.adapter(adapter.platform_id).get_metadata(source_id))
            remote.append(meta)
        if remote:
            ids += self.queue_results(remote, priority, policy)
        return ids

    # ------------------------------------------------------------ budgets

    def rate_status(self) -> dict[str, RateStatus]:
        return rate_status()

    def close(self) -> None:
        self._adapters.clear()


def _has_credentials(name: str) -> bool:
    if name == "cults3d":
        return bool(credentials.get(name, "username") and credentials.get(name))
    return bool(credentials.get(name, NEEDS[name][0]))


def _default_rate(name: str) -> str:
    try:
        limit = getattr(adapter_class(name), "default_rate_limit", None) or getattr(adapter_class(name),
                                                                                   "rate_limit", None)
    except Exception:
        return ""
    return f"{limit.requests}/{limit.per_seconds:g}s" if limit else ""
