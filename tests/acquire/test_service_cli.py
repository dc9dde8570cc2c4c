"""AcquireService and the acquire / config credentials commands against the fake Thingiverse."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from destill3d_tui.cli import main
from destill3d_tui.engine.acquire import credentials
from destill3d_tui.engine.errors import ConfigError, PlatformError
from tests.fakes.thingiverse import FakeThingiverse


class MemoryKeyring(KeyringBackend):
    """A secure-looking backend that keeps secrets in memory (stands in for the system keyring)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


# ---------------------------------------------------------------- credentials


def test_environment_wins_over_keyring(memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THINGIVERSE_API_KEY", raising=False)
    assert credentials.set_credential("thingiverse", "from-keyring-123") == "keyring"
    assert credentials.get("thingiverse") == "from-keyring-123"
    monkeypatch.setenv("THINGIVERSE_API_KEY", "from-env-456")
    assert credentials.get("thingiverse") == "from-env-456"
    sources = {(e.platform, e.source) for e in credentials.list_entries()}
    assert ("thingiverse", "env:THINGIVERSE_API_KEY") in sources
    assert credentials.delete_credential("thingiverse") and not memory_keyring.store


def test_no_secure_keyring_needs_explicit_opt_in(no_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKETCHFAB_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        credentials.set_credential("sketchfab", "plain-secret-789")
    assert "no secure keyring" in str(info.value) and "--allow-plaintext-credentials" in str(info.value)
    assert "plain-secret-789" not in str(info.value)
    assert not credentials.plaintext_path().exists()
    where = credentials.set_credential("sketchfab", "plain-secret-789", allow_plaintext=True)
    path = Path(where)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.get("sketchfab") == "plain-secret-789"
    assert ("sketchfab", "token", "plaintext-file") in {(e.platform, e.field, e.source)
                                                         for e in credentials.list_entries()}
    assert credentials.redact("https://x/y?key=plain-secret-789&a=1") == "https://x/y?key=***&a=1"
    assert "plain-secret-789" not in credentials.redact("token plain-secret-789 leaked")
    assert credentials.delete_credential("sketchfab") and credentials.get("sketchfab") is None


def test_cli_credentials_set_list_delete(no_keyring: None, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("ghp_cli_secret\n"))
    assert main(["config", "credentials", "set", "github"]) == 2  # refused without the opt-in
    assert "no secure keyring" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("ghp_cli_secret\n"))
    assert main(["config", "credentials", "set", "github", "--allow-plaintext-credentials"]) == 0
    assert "PLAINTEXT" in capsys.readouterr().err
    assert main(["config", "credentials", "list"]) == 0
    listing = capsys.readouterr().out
    assert "github" in listing and "plaintext-file" in listing and "ghp_cli_secret" not in listing
    assert main(["config", "credentials", "delete", "github"]) == 0
    assert main(["config", "credentials", "delete", "github"]) == 1


# ---------------------------------------------------------------- service


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeThingiverse]:
    with FakeThingiverse(n_things=8) as server:
        monkeypatch.setenv("THINGIVERSE_API_KEY", server.token)
        monkeypatch.setenv("DESTILL3D_PLATFORMS__THINGIVERSE__BASE_URL", server.url)
        monkeypatch.setenv("DESTILL3D_PLATFORMS__THINGIVERSE__RATE_LIMIT", "100/s")
        monkeypatch.setenv("DESTILL3D_ACQUISITION__ALLOW_HOSTS", server.cdn.hostport)
        monkeypatch.setenv("DESTILL3D_DATABASE__URL", f"sqlite:///{tmp_path / 'svc.db'}")
        yield server


def engine():  # type: ignore[no-untyped-def]
    from destill3d_tui.engine import Destill3D
    from destill3d_tui.engine.config import load_settings

    return Destill3D(load_settings())


def test_queue_results_applies_the_licence_policy(fake: FakeThingiverse) -> None:
    fake.things[7_000_001]["license"] = "All Rights Reserved"
    with engine() as d3d:
        results = d3d.acquire.search_many("thingiverse", "gear", 10)
        assert len(results) == 10 and all(r.license.spdx == "" for r in results)  # hits carry no licence
        ids = d3d.acquire.queue_results(results, policy="commercial")
        rows = [d3d.queue.get(i) for i in ids]
        spdx = {r.metadata["license"]["spdx"] for r in rows}
        assert spdx <= {"CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0"}  # NC and all-rights-reserved refused
        refused = {r.source_id: r.why for r in d3d.acquire.refused}
        assert "7000001" in refused and "not an open licence" in refused["7000001"]
        assert "4410982" in refused and "commercial" in refused["4410982"]
        gearbox = [r for r in rows if r.group_id == "thingiverse:5823117"]
        assert sorted(r.file_id for r in gearbox) == ["12093311", "12093312", "12093313"]
        assert gearbox[0].metadata["author"] == "gearsmith_lab" and gearbox[0].platform == "thingiverse"
        again = d3d.acquire.queue_results(results, policy="commercial")
        assert sorted(again) == sorted(ids)  # queueing twice adds nothing


def test_add_urls(fake: FakeThingiverse) -> None:
    with engine() as d3d:
        ids = d3d.acquire.add_urls(["https://www.thingiverse.com/thing:4410982",
                                    "https://www.thingiverse.com/thing:5823117/?fileId=12093311"])
        rows = [d3d.queue.get(i) for i in ids]
        assert [r.model_id for r in rows] == ["thingiverse:4410982:8120077", "thingiverse:5823117:12093311"]
        with pytest.raises(PlatformError) as info:
            d3d.acquire.add_urls(["https://example.com/model/1"])
        assert info.value.reason == "unsupported_url"
        platforms = {p.platform_id: p for p in d3d.acquire.platforms()}
        assert platforms["thingiverse"].available and not platforms["printables"].available
        assert "thingiverse" in d3d.acquire.rate_status()


def test_cli_search_json_and_queue(fake: FakeThingiverse, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acquire", "search", "-p", "thingiverse", "-q", "gear", "-n", "4", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and lines[0]["source_id"] == "4410982"
    assert main(["acquire", "search", "-p", "thingiverse", "-q", "herringbone", "--queue", "--license",
                 "research", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(report["queued"]) == 1 and report["refused"] == []
    assert main(["acquire", "search", "-p", "thingiverse", "-q", "generated", "-n", "8", "--queue", "--license",
                 "CC0-1.0", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(exact["queued"]) == 2  # generated things 3 and 7 carry CC0; the rest are reported, not queued
    assert len(exact["refused"]) == 6 and all("CC0-1.0" in r["why"] for r in exact["refused"])
    assert main(["acquire", "url", "https://www.thingiverse.com/thing:7000002", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["queued"]) == 1
    assert main(["acquire", "list", "--json"]) == 0
    listed = {json.loads(line)["platform_id"] for line in capsys.readouterr().out.splitlines()}
    assert {"thingiverse", "sketchfab", "github", "local"} <= listed


def test_cli_acquire_run_downloads_and_stores(fake: FakeThingiverse, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acquire", "url", "https://www.thingiverse.com/thing:7000000"]) == 0
    assert main(["--set", "classification.enabled=false", "acquire", "run", "--concurrency", "1", "--json"]) == 0
    done = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any("7000000" in json.dumps(d) for d in done)
    with engine() as d3d:
        assert d3d.queue.counts()["stored"] == 1
