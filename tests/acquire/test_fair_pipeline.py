"""The pipeline's download side at the SHIPPED budgets: fair across platforms, and a drain that drains.

- Six platforms queued behind a run of Thingiverse items (1 request/s): every platform gets items
  downloaded within a minute, because claims go round-robin by platform and a platform waiting on
  its budget holds none of the shared download slots.
- Stopping while a download drips (in process, and SIGTERM to ``--headless``): the download is
  cancelled at once, its item goes back to the queue uncharged, no partial file stays and no
  asyncio task is left pending.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from destill3d_tui.engine import Destill3D
from destill3d_tui.engine.acquire.base import SearchFilters
from destill3d_tui.engine.config import PlatformSettings, Settings, load_settings
from destill3d_tui.engine.events import Event, ItemStored, StageFinished
from destill3d_tui.engine.pipeline.items import WorkItem
from destill3d_tui.engine.queue import QueueEntry
from tests.acquire.test_full_run import REPO as CHECKOUT
from tests.acquire.test_full_run import cli, environment
from tests.fakes.cults3d import FakeCults3D
from tests.fakes.github import REPO, FakeGitHub
from tests.fakes.myminifactory import FakeMyMiniFactory
from tests.fakes.server import Reply
from tests.fakes.sketchfab import FakeSketchfab
from tests.fakes.smithsonian import FakeSmithsonian
from tests.fakes.thingiverse import FakeThingiverse

PLATFORMS = ("thingiverse", "sketchfab", "github", "myminifactory", "cults3d", "smithsonian")
SKETCHFAB_UID = "8d3f0c5e2a1b4c7d9e6f0a1b2c3d4e5f"
# generated things whose file is one STL (every fifth is a zip): 32 of them at 2 requests each, served in
# queue order at 1 request/s, would keep every other platform waiting for over a minute
THINGIVERSE_STLS = tuple(n for n in range(40) if n % 5 != 4)


def pipeline_settings(tmp_path: Path, allow: list[str], base_urls: dict[str, str]) -> Settings:
    """Shipped acquisition settings (budgets, timeouts, back-off); only where the fakes live changes."""
    settings = load_settings(overrides={
        "database.url": f"sqlite:///{tmp_path / 'd.db'}",
        "classification.enabled": False,
        "extraction.target_points": 512,
        "acquisition.license_policy": "any",
    })
    settings.acquisition.allow_hosts = allow
    for platform, url in base_urls.items():
        settings.platforms[platform] = PlatformSettings(base_url=url)
    return settings


def thingiverse_entry(n: int) -> QueueEntry:
    thing, file_id = 7_000_000 + n, 90_000_000 + n * 10
    return QueueEntry(model_id=f"thingiverse:{thing}:{file_id}", platform="thingiverse", source_url="",
                      source_id=str(thing), file_id=str(file_id), group_id=f"thingiverse:{thing}")


def entry(platform: str, source_id: str, file_id: str | None = None) -> QueueEntry:
    model_id = f"{platform}:{source_id}" + (f":{file_id}" if file_id else "")
    return QueueEntry(model_id=model_id, platform=platform, source_url="", source_id=source_id, file_id=file_id)


@pytest.fixture
def six(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        fakes: dict[str, Any] = {
            "thingiverse": stack.enter_context(FakeThingiverse(n_things=40)),
            "sketchfab": stack.enter_context(FakeSketchfab(n_extra=0)),
            "github": stack.enter_context(FakeGitHub()),
            "myminifactory": stack.enter_context(FakeMyMiniFactory(n_extra=0)),
            "cults3d": stack.enter_context(FakeCults3D()),
            "smithsonian": stack.enter_context(FakeSmithsonian()),
        }
        fakes["cults3d"].give_file_urls = True
        for name, value in {"THINGIVERSE_API_KEY": fakes["thingiverse"].token,
                            "SKETCHFAB_API_KEY": fakes["sketchfab"].token, "GITHUB_TOKEN": fakes["github"].token,
                            "MYMINIFACTORY_API_KEY": fakes["myminifactory"].key,
                            "MYMINIFACTORY_OAUTH_TOKEN": fakes["myminifactory"].oauth,
                            "CULTS3D_USERNAME": fakes["cults3d"].user, "CULTS3D_API_KEY": fakes["cults3d"].key,
                            "SMITHSONIAN_API_KEY": fakes["smithsonian"].api_key}.items():
            monkeypatch.setenv(name, value)
        yield fakes


def test_six_platforms_all_progress_at_their_default_budgets(six: dict[str, Any], tmp_path: Path) -> None:
    allow = [six["thingiverse"].cdn.hostport, six["sketchfab"].s3.hostport, six["github"].raw.hostport]
    d3d = Destill3D(pipeline_settings(tmp_path, allow, {p: six[p].url for p in PLATFORMS}))
    # Thingiverse's run first in queue order: served in that order, it held every slot before
    d3d.queue.add_entries([thingiverse_entry(n) for n in THINGIVERSE_STLS])
    d3d.queue.add_entries([entry("sketchfab", SKETCHFAB_UID), entry("github", REPO, "cad/stl/finger_left.stl"),
                           entry("myminifactory", "181904"), entry("cults3d", "low-poly-planter-2")])
    found = d3d.acquire.search("smithsonian", "", SearchFilters(per_page=1))
    assert d3d.acquire.queue_results(found.results, policy="any")
    downloaded: dict[str, float] = {}
    done = threading.Event()
    started = time.monotonic()

    def progress(event: Event) -> None:
        if (isinstance(event, StageFinished) and event.stage == "acquire") or isinstance(event, ItemStored):
            downloaded.setdefault(event.model_id.split(":", 1)[0], time.monotonic() - started)
            if set(PLATFORMS) <= set(downloaded):
                done.set()

    d3d.events.subscribe(progress)
    timer = threading.Timer(60.0, done.set)
    timer.start()
    try:
        d3d.pipeline.run_until_empty(cancel=done, watch=True)
    finally:
        timer.cancel()
        d3d.close()
    assert set(downloaded) == set(PLATFORMS), f"no download within a minute for {set(PLATFORMS) - set(downloaded)}"
    assert max(downloaded.values()) < 60.0


def test_drain_cancels_a_dripping_download_and_hands_the_item_back(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeThingiverse(n_things=1) as fake:
        monkeypatch.setenv("THINGIVERSE_API_KEY", fake.token)
        dripping = "/files/90000000/download"  # answered with the bytes at ~1 KB/s instead of a redirect
        fake.server.inject(dripping, Reply(body=fake.blobs[90_000_000] * 300, drip_s=0.001))  # minutes
        d3d = Destill3D(pipeline_settings(tmp_path, [fake.cdn.hostport], {"thingiverse": fake.url}))
        (queue_id,) = d3d.queue.add_entries([thingiverse_entry(0)])
        stop = threading.Event()
        runner = threading.Thread(target=d3d.pipeline.run_until_empty, kwargs={"cancel": stop}, daemon=True)
        runner.start()
        deadline = time.monotonic() + 30
        while not fake.server.hits(dripping) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.server.hits(dripping), "the download never started"
        time.sleep(0.3)  # bytes are dripping into the .part file now
        asked = time.monotonic()
        stop.set()
        runner.join(timeout=20)
        took = time.monotonic() - asked
        assert not runner.is_alive() and took < 5.0, f"the drain took {took:.1f} s"
        pipeline = d3d.pipeline.engine
        loop = pipeline.stages.acquire_stage.loop
        assert loop is not None
        assert not asyncio.all_tasks(loop), "a task was left pending on the download loop"
        row = d3d.queue.get(queue_id)
        assert row.stage == "queued" and row.lease_owner is None and row.retry_count == 0  # back, uncharged
        assert not list(pipeline.temp_root.rglob("*.part"))
        d3d.close()


def test_sigterm_to_headless_cancels_downloads_and_exits_143(tmp_path: Path) -> None:
    with FakeThingiverse(n_things=3) as fake:
        env = environment(fake, tmp_path)
        for file_id in (90_000_000, 90_000_010, 90_000_020):  # every download drips for minutes
            fake.server.inject(f"/files/{file_id}/download", Reply(body=b"x" * 300_000, drip_s=0.001))
        settings = load_settings(environ=env)
        with Destill3D(settings) as d3d:
            ids = d3d.queue.add_entries([thingiverse_entry(n) for n in range(3)])
        runner = subprocess.Popen(cli("--headless", "--json"), env=env, cwd=CHECKOUT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while not any(r.path.endswith("/download") for r in fake.server.requests) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # bytes are dripping now
            asked = time.monotonic()
            runner.send_signal(signal.SIGTERM)
            _out, err = runner.communicate(timeout=60)
            took = time.monotonic() - asked
        finally:
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
        assert runner.returncode == 143 and took < 10.0, (runner.returncode, took, err[-500:])
        assert "pending" not in err and "Traceback" not in err
        with Destill3D(settings) as d3d:
            rows = [d3d.queue.get(i) for i in ids]
        assert all(r.stage == "queued" and r.lease_owner is None and r.retry_count == 0 for r in rows)


def test_claims_go_round_robin_by_platform(tmp_path: Path) -> None:
    d3d = Destill3D(pipeline_settings(tmp_path, [], {}))
    d3d.queue.add_entries([thingiverse_entry(n) for n in range(5)])
    d3d.queue.add_entries([entry("cults3d", "a"), entry("cults3d", "b"), entry("sketchfab", "c")])
    pipeline = d3d.pipeline.engine
    first = pipeline.writer.claim_round_robin(3)
    assert sorted(r.platform for r in first) == ["cults3d", "sketchfab", "thingiverse"]
    # with one of each in flight, the next claims again go one per platform that still has items
    for row in first:
        pipeline.run_state.hold(WorkItem(row=row, temp_dir=tmp_path / f"q{row.queue_id}"))
    second = pipeline.writer.claim_round_robin(2)
    assert sorted(r.platform for r in second) == ["cults3d", "thingiverse"]
    d3d.close()


def test_a_claim_that_found_nothing_outside_the_busy_platforms_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One platform filling the queue: the claim excluding it (which reads every active row: it
    cannot use the priority index) runs once per TTL, not once per item; a platform queued later
    still gets its turn first once the answer expires."""
    from destill3d_tui.engine.pipeline import writer as writer_mod

    monkeypatch.setattr(writer_mod, "NONE_OUTSIDE_TTL_S", 0.3)
    d3d = Destill3D(pipeline_settings(tmp_path, [], {}))
    d3d.queue.add_entries([thingiverse_entry(n) for n in range(40)])
    pipeline = d3d.pipeline.engine
    asked: list[frozenset[str]] = []
    claim = pipeline.run_state.queue.claim
    monkeypatch.setattr(pipeline.run_state.queue, "claim",
                        lambda owner, n, exclude_platforms=frozenset(): asked.append(exclude_platforms)
                        or claim(owner, n, exclude_platforms=exclude_platforms))  # fmt: skip
    for _ in range(5):  # each claim goes in flight: thingiverse is the busy platform from the second on
        for row in pipeline.writer.claim_round_robin(1):
            pipeline.run_state.hold(WorkItem(row=row, temp_dir=tmp_path / f"q{row.queue_id}"))
    assert asked.count(frozenset({"thingiverse"})) == 1, asked  # found empty once, then trusted
    d3d.queue.add_entries([entry("sketchfab", "late")])
    took = [r.platform for r in pipeline.writer.claim_round_robin(1)]
    assert took == ["thingiverse"]  # within the TTL: claimed in priority order
    time.sleep(0.35)
    took = [r.platform for r in pipeline.writer.claim_round_robin(1)]
    assert took == ["sketchfab"]  # expired: the platform with nothing in flight goes first again
    d3d.close()
