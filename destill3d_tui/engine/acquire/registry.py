"""Adapters found through the ``destill3d.platforms`` entry points (the built-in ones too).

``get_adapter("thingiverse", settings)`` builds ``ThingiverseAdapter(settings, http=None)``;
``adapter_for_url(url)`` asks every adapter's ``parse_url`` which platform a model-page URL is.
"""

from __future__ import annotations

import functools
import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..config import Settings
from ..errors import PlatformError
from .base import PlatformAdapter

GROUP = "destill3d.platforms"


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    """Read once per process: a scan of every installed distribution's metadata costs ~4 ms of
    interpreter time, and the pipeline asks for each item it acquires (archives.members_are_models);
    a platform installed while the app runs is found after a restart."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def list_platforms() -> list[str]:
    """Registered platform ids, sorted (``local`` included)."""
    return sorted(_entry_points())


def adapter_class(platform_id: str) -> type:
    eps = _entry_points()
    if platform_id not in eps:
        raise PlatformError(
            f"no adapter registered for platform {platform_id!r} (known: {', '.join(sorted(eps))})",
            platform=platform_id, reason="platform_unavailable", kind="permanent",
        )
    return eps[platform_id].load()


def get_adapter(platform_id: str, settings: Settings | None = None, http: Any = None,
                emit: Any = None) -> PlatformAdapter:
    """A ready adapter for ``platform_id``; ``emit`` receives RateBudgetChanged events."""
    settings = settings or Settings()
    if not settings.platform(platform_id).enabled:
        raise PlatformError(f"platform {platform_id!r} is disabled in the settings", platform=platform_id,
                            reason="platform_unavailable", kind="permanent")
    cls = adapter_class(platform_id)
    if "emit" in inspect.signature(cls).parameters:
        return cls(settings, http=http, emit=emit)
    return cls(settings, http=http)  # third-party adapters that take only (settings, http)


def adapter_for_url(url: str, settings: Settings | None = None) -> tuple[PlatformAdapter, str] | None:
    """The adapter whose ``parse_url`` recognises ``url``, and the source id; None when none does."""
    settings = settings or Settings()
    for name in list_platforms():
        if name == "local":
            continue
        try:
            adapter = get_adapter(name, settings)
        except (PlatformError, ImportError):  # a broken third-party adapter must not hide the others
            continue
        source_id = adapter.parse_url(url)
        if source_id:
            return adapter, source_id
    if url.startswith("file://") or "://" not in url:
        adapter = get_adapter("local", settings)
        source_id = adapter.parse_url(url)
        if source_id:
            return adapter, source_id
    return None
