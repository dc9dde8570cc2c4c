"""The whole path at the shipped rate budget (Thingiverse: 1 request/s): search the fake
Thingiverse, queue 8 results, `--headless` stores them, killed once in the middle and restarted;
every model is stored exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.thingiverse import FakeThingiverse

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeThingiverse]:
    with FakeThingiverse(n_things=8) as server:
        yield server


def environment(fake: FakeThingiverse, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTILL3D_")}
    env.update({
        "DESTILL3D_HOME": str(home),
        "DESTILL3D_DATABASE__URL": f"sqlite:///{home / 'run.db'}",
        "DESTILL3D_PLATFORMS__THINGIVERSE__BASE_URL": fake.url,
        "DESTILL3D_ACQUISITION__ALLOW_HOSTS": fake.cdn.hostport,
        "DESTILL3D_CLASSIFICATION__ENABLED": "false",
        "DESTILL3D_PIPELINE__WORKERS": "2",
        "DESTILL3D_EXTRACTION__TARGET_POINTS": "512",
        "THINGIVERSE_API_KEY": fake.token,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "destill3d_tui", *args]


@pytest.mark.slow
def test_search_queue_headless_kill_and_resume(fake: FakeThingiverse, tmp_path: Path) -> None:
    env = environment(fake, tmp_path)
    queued = subprocess.run(cli("acquire", "search", "--platform", "thingiverse", "--query", "gear", "--limit", "8",
                                "--queue", "--json"), env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert queued.returncode == 0, queued.stderr
    report = json.loads(queued.stdout.strip().splitlines()[-1])
    ids = report["queued"]
    assert report["refused"] == []
    # 8 things: the fixture gearbox has 3 model files (STL, STL, 3MF; SCAD and PDF skipped), the others one each
    assert len(ids) == 10 and len(set(ids)) == 10

    first = subprocess.Popen(cli("--headless", "--json"), env=env, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    finished = 0
    deadline = time.monotonic() + 240
    assert first.stdout is not None
    while finished < 3 and time.monotonic() < deadline:
        line = first.stdout.readline()
        if not line:
            break
        finished += 1
    os.killpg(first.pid, signal.SIGKILL)  # the whole session: the runner and its extraction children
    first.wait(timeout=30)
    assert finished >= 3, "the first run stored nothing before it was killed"

    second = subprocess.run(cli("--headless", "--json"), env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=400)
    assert second.returncode == 0, second.stderr[-2000:]

    from destill3d_tui.engine import Destill3D
    from destill3d_tui.engine.config import load_settings

    settings = load_settings(environ=env)
    with Destill3D(settings) as d3d:
        counts = d3d.queue.counts()
        rows = [d3d.queue.get(i) for i in ids]
        snapshots = d3d.db.query(limit=1000)
    assert {r.stage for r in rows} == {"stored"}, counts
    stored = [s.model_id for s in snapshots]
    # every model exactly once: the 10 queued and the second STL of the one zip (7000004, unpacked in the worker)
    assert len(stored) == len(set(stored)) == 11
    assert {r.model_id for r in rows} <= set(stored)
    assert sum(1 for s in snapshots if s.license_spdx) == 11
    groups = {r.group_id for r in rows}
    assert "thingiverse:5823117" in groups and sum(r.group_id == "thingiverse:5823117" for r in rows) == 3
    # the first run was really interrupted: some items were done twice would show up as duplicates
    assert all(r.duplicate_of is None for r in rows)
