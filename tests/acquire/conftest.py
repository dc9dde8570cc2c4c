"""Fixtures for the acquisition tests: quick HTTP settings and real loopback servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from destill3d_tui.engine.config import Settings
from tests.fakes.server import FakeServer


def quick_settings(*allow: str, **acquisition: object) -> Settings:
    """Settings whose back-offs and timeouts fit a test run; ``allow`` are loopback host:ports."""
    settings = Settings()
    acq = settings.acquisition
    acq.backoff_initial_s = 0.05
    acq.backoff_max_s = 0.2
    acq.read_timeout_s = 2.0
    acq.request_timeout_s = 10.0
    acq.download_deadline_s = 10.0
    acq.stall_window_s = 1.0
    acq.min_download_bytes_per_s = 200
    acq.retry_attempts = 3
    acq.max_retry_wait_s = 5.0
    acq.allow_hosts = list(allow)
    for key, value in acquisition.items():
        setattr(acq, key, value)
    return settings


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def other_server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


def platform_settings(
    platform: str, base_url: str, *allow: str, rate: str = "", **acquisition: object
) -> Settings:
    """Quick settings with ``platform`` pointed at a fake server, at the platform's shipped rate budget."""
    from destill3d_tui.engine.config import PlatformSettings

    settings = quick_settings(*allow, **acquisition)
    settings.platforms[platform] = PlatformSettings(base_url=base_url, rate_limit=rate)
    return settings


@pytest.fixture(autouse=True)
def _fresh_rate_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate buckets live for the process; each test starts from none (two test processes share files)."""
    from destill3d_tui.engine.acquire import rate

    monkeypatch.setattr(rate, "_BUCKETS", {})
