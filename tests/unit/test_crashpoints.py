"""One crash-point mechanism (engine/crashpoints.py) and the pipeline's public interface (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import destill3d_tui.engine.pipeline as pipeline_pkg

REPO = Path(__file__).resolve().parents[2]


def run_child(code: str, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    if crash_at is not None:
        env["DESTILL3D_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


COUNTING = """
from destill3d_tui.engine import crashpoints
for n in range(1, 4):
    crashpoints.reached("other_point")
    crashpoints.reached("after_claim")
    print("passed", n, flush=True)
"""


def test_the_nth_time_a_point_is_reached_the_process_dies_killed() -> None:
    proc = run_child(COUNTING, "after_claim:2")
    assert proc.returncode == 137, proc.stderr
    assert proc.stdout.split("\n")[:-1] == ["passed 1"]


def test_no_count_means_the_first_time_and_unset_means_never() -> None:
    assert run_child(COUNTING, "after_claim").returncode == 137
    survived = run_child(COUNTING, None)
    assert survived.returncode == 0 and survived.stdout.count("passed") == 3, survived.stderr


def test_the_variable_is_read_when_the_point_is_reached_and_the_exit_status_is_the_callers() -> None:
    """The index writer's points (exit 86): a test sets the variable after start-up, as test_index.py does."""
    code = (
        "import os\n"
        "from destill3d_tui.engine import crashpoints\n"
        "crashpoints.reached('index.mid_write', 86)\n"
        "os.environ['DESTILL3D_CRASH_AT'] = 'index.mid_write'\n"
        "crashpoints.reached('index.before_save', 86)\n"
        "crashpoints.reached('index.mid_write', 86)\n"
        "print('survived')\n"
    )
    proc = run_child(code, None)
    assert proc.returncode == 86 and "survived" not in proc.stdout, proc.stderr


def test_crashpoints_is_a_core_module() -> None:
    """Store and pipeline alike import it: it must load nothing else of the engine."""
    code = (
        "import sys\n"
        "import destill3d_tui.engine.crashpoints\n"
        "print(sorted(m for m in sys.modules if m.startswith('destill3d_tui')))\n"
    )
    proc = run_child(code, None)
    assert proc.stdout.strip() == str(["destill3d_tui", "destill3d_tui.engine", "destill3d_tui.engine.crashpoints"])


def test_the_pipeline_package_exports_no_private_name() -> None:
    assert [name for name in pipeline_pkg.__all__ if name.startswith("_")] == []
    for name in ("Pipeline", "Writer", "Stages", "Op", "platform_wait"):
        assert name in pipeline_pkg.__all__ and hasattr(pipeline_pkg, name)
    assert callable(pipeline_pkg.Writer.submit)
