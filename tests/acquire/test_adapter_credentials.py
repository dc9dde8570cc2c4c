"""Credentials are asked for once, in the adapter base: a missing one fails before any request
and its message says how to set it (the first environment variable, or the keyring command)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire import credentials
from destill3d_tui.engine.acquire.base import SearchFilters
from destill3d_tui.engine.acquire.registry import get_adapter
from destill3d_tui.engine.errors import PlatformError
from tests.acquire.conftest import platform_settings
from tests.fakes.server import FakeServer


@pytest.fixture
def silent() -> Iterator[FakeServer]:
    """A server no request may reach: a missing credential is refused before the network."""
    with FakeServer() as srv:
        yield srv


def _refusal(silent: FakeServer, platform: str, call: str, tmp_path: Path) -> PlatformError:
    adapter = get_adapter(platform, platform_settings(platform, silent.url))
    with pytest.raises(PlatformError) as info:
        if call == "search":
            asyncio.run(adapter.search("gear", SearchFilters()))
        else:
            asyncio.run(adapter.download("1", tmp_path, "2"))
    assert info.value.reason == "auth_failed" and info.value.kind == "permanent"
    assert silent.requests == []
    return info.value


def test_thingiverse_names_its_token(silent: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in credentials.ENV_NAMES["thingiverse"]["token"]:
        monkeypatch.delenv(name, raising=False)
    error = _refusal(silent, "thingiverse", "search", tmp_path)
    assert str(error) == ("thingiverse needs an app token: set THINGIVERSE_API_KEY or "
                          "`destill3d-tui config credentials set thingiverse`")  # fmt: skip


def test_myminifactory_names_its_key_and_its_oauth_token(
    silent: FakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MYMINIFACTORY_API_KEY", raising=False)
    monkeypatch.delenv("MYMINIFACTORY_OAUTH_TOKEN", raising=False)
    error = _refusal(silent, "myminifactory", "search", tmp_path)
    assert str(error).startswith("myminifactory needs an API key: set MYMINIFACTORY_API_KEY or ")
    monkeypatch.setenv("MYMINIFACTORY_API_KEY", "a-key-but-no-oauth")
    error = _refusal(silent, "myminifactory", "download", tmp_path)
    assert "OAuth" in str(error)
    assert str(error).endswith(": set MYMINIFACTORY_OAUTH_TOKEN or "
                               "`destill3d-tui config credentials set myminifactory --field oauth`")  # fmt: skip


def test_how_to_set_without_an_environment_variable() -> None:
    expected = "set GRABCAD_SESSION or `destill3d-tui config credentials set grabcad --field session`"
    assert credentials.how_to_set("grabcad", "session") == expected
    assert credentials.how_to_set("printables") == "store it with `destill3d-tui config credentials set printables`"
