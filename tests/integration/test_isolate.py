"""Supervised extraction children: a crash, a hang or a runaway allocation fails that file alone."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from destill3d_tui.engine.errors import FormatError, IsolationError
from destill3d_tui.engine.extract.isolate import ExtractionSupervisor, extract_isolated

TARGET = "tests.integration.isolate_targets:behave"


@pytest.fixture
def files(tmp_path: Path, corpus_dir: Path) -> dict[str, Path]:
    made = {}
    for name, body in {"crash.stl": b"segfault", "hang.stl": b"hang", "hog.stl": b"allocate"}.items():
        made[name] = tmp_path / name
        made[name].write_bytes(body)
    for name in ("stl/unit_cube.STL", "obj/cube.OBJ", "off/Cube.off"):
        target = tmp_path / Path(name).name
        shutil.copy(corpus_dir / name, target)
        made[target.name] = target
    return made


def test_crash_hang_and_hog_fail_alone(files: dict[str, Path], tmp_path: Path) -> None:
    order = ["unit_cube.STL", "crash.stl", "cube.OBJ", "hang.stl", "hog.stl", "Cube.off"]
    started = time.monotonic()
    with ExtractionSupervisor(2, timeout_s=8, memory_limit_mb=3072, target=TARGET, temp_root=tmp_path / "w") as sup:
        futures = {name: sup.submit(name, files[name]) for name in order}
        outcomes = {}
        for name, future in futures.items():
            exc = future.exception(timeout=120)
            outcomes[name] = exc if exc is not None else future.result()
    assert time.monotonic() - started < 100
    for name in ("unit_cube.STL", "cube.OBJ", "Cube.off"):
        snap = outcomes[name]
        assert not isinstance(snap, BaseException), f"{name}: {snap!r}"
        assert snap.provenance.original_filename == name
        assert snap.features.vertex_count in (8, 36)
    expected = {"crash.stl": "parser_crashed", "hang.stl": "timeout", "hog.stl": "memory_limit"}
    for name, reason in expected.items():
        assert isinstance(outcomes[name], IsolationError), f"{name}: {outcomes[name]!r}"
        assert outcomes[name].reason == reason, f"{name}: {outcomes[name]!r}"


def test_children_run_below_the_app(tmp_path: Path, corpus_dir: Path) -> None:
    # the terminal app shares 2 cores with 2 busy workers: the children must yield the CPU to it
    src = tmp_path / "niceness_cube.stl"
    shutil.copy(corpus_dir / "stl/unit_cube.STL", src)
    own = os.nice(0)
    seen = {}
    for nice in (0, 10):
        with ExtractionSupervisor(1, timeout_s=60, memory_limit_mb=3072, target=TARGET, nice=nice,
                                  temp_root=tmp_path / f"w{nice}") as sup:
            seen[nice] = sup.submit("k", src).result(timeout=120).model_id
    assert seen == {0: f"nice:{own}", 10: f"nice:{min(19, own + 10)}"}
    assert os.nice(0) == own  # the supervisor's own priority is untouched


def test_shipped_settings_lower_the_workers() -> None:
    from destill3d_tui.engine.config import Settings
    from destill3d_tui.engine.pipeline.extraction import make_supervisor

    settings = Settings()
    assert settings.extraction.worker_nice == 10
    sup = make_supervisor(settings)
    try:
        assert sup.nice == 10
    finally:
        sup.close()


def test_file_errors_keep_class_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "nothing.xyz"
    bad.write_text("not numbers at all\nstill not\n")
    with pytest.raises(FormatError) as info:
        extract_isolated(bad, timeout_s=60, memory_limit_mb=3072, target=TARGET)
    assert info.value.reason == "parse_error"


def test_child_works_in_item_temp_dir_and_cleans_it(tmp_path: Path, corpus_dir: Path) -> None:
    src = tmp_path / "in" / "cube.stl"
    src.parent.mkdir()
    src.write_bytes(b"writefile\n" + (corpus_dir / "stl/unit_cube.STL").read_bytes()[10:])
    root = tmp_path / "work"
    snap_or_exc = None
    with ExtractionSupervisor(1, timeout_s=60, memory_limit_mb=3072, target=TARGET, temp_root=root) as sup:
        future = sup.submit("k", src)
        snap_or_exc = future.exception(timeout=120) or future.result()
    # the body no longer parses as STL (header changed), but the write happened in the item dir
    assert not (src.parent / "written_by_child.txt").exists()
    assert not (Path.cwd() / "written_by_child.txt").exists()
    assert list(root.rglob("written_by_child.txt")) == []  # item dir removed after the file
    assert snap_or_exc is not None


def test_close_with_kill_stops_a_running_file(files: dict[str, Path], tmp_path: Path) -> None:
    sup = ExtractionSupervisor(1, timeout_s=300, memory_limit_mb=3072, target=TARGET, temp_root=tmp_path / "w")
    running = sup.submit("hang", files["hang.stl"])
    queued = sup.submit("cube", files["Cube.off"])
    deadline = time.monotonic() + 120
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the child is inside the file now
    started = time.monotonic()
    sup.close(kill=True)
    assert time.monotonic() - started < 30
    assert running.exception(timeout=1).reason == "cancelled"
    assert queued.cancelled()


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (read from /proc, Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_die_with_a_killed_supervisor(files: dict[str, Path], tmp_path: Path) -> None:
    """A SIGKILLed runner leaves no worker behind still chewing on its file."""
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from destill3d_tui.engine.extract.isolate import ExtractionSupervisor\n"
        f"sup = ExtractionSupervisor(1, timeout_s=300, memory_limit_mb=3072, target={TARGET!r},"
        f" temp_root={str(tmp_path / 'w')!r})\n"
        f"future = sup.submit('hang', {str(files['hang.stl'])!r})\n"
        "while not future.running():\n    time.sleep(0.05)\n"
        "print('running', flush=True)\ntime.sleep(600)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == b"running"
        time.sleep(1.0)  # the child is inside the file now
        workers = _children(runner.pid)
        assert workers, "the supervisor started no worker"
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "a worker outlived its SIGKILLed supervisor"
    finally:
        if runner.poll() is None:
            runner.kill()
