"""Untrusted names: shown escaped everywhere, carried as bytes, saved under safe names, atomically."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire.platforms.local import LocalAdapter
from destill3d_tui.engine.errors import FormatError, describe
from destill3d_tui.engine.events import ItemFailed, ItemStored
from destill3d_tui.engine.headless import _Reporter
from destill3d_tui.engine.queue import Queue, local_entries
from destill3d_tui.engine.store.db import Store
from destill3d_tui.engine.store.snapshot import (
    NAME_MAX_BYTES,
    Snapshot,
    SnapshotWriteError,
    snapshot_file_name,
    write_atomic,
)
from destill3d_tui.engine.text import display, display_all
from tests.unit.test_snapshot_codec import _snapshot as codec_snapshot

HOSTILE = "\x1b]0;pwned\x07 \x1b[2J \x1b[31mred\x9b\u202eevil\x7f.stl"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\x7f")  # what must never reach a terminal as it is
UNDECODABLE = os.fsdecode(b"caf\xe9-\xff.stl")  # Latin-1 bytes: not UTF-8


def test_display_escapes_controls_c1_bidi_and_undecodable_bytes() -> None:
    shown = display(HOSTILE)
    assert not any(ch in shown for ch in RAW)
    assert shown == "\\x1b]0;pwned\\x07 \\x1b[2J \\x1b[31mred\\x9b\\u202eevil\\x7f.stl"
    assert display(UNDECODABLE) == "caf\\xe9-\\xff.stl"
    assert display(b"caf\xe9.stl") == "caf\\xe9.stl"  # raw bytes from the file system
    assert display(Path(UNDECODABLE)) == "caf\\xe9-\\xff.stl"
    assert display("été [WIP].stl") == "été [WIP].stl"  # printable text is left alone
    assert display("a\nb") == "a\\nb" and display("a\nb", newlines=True) == "a\nb"
    assert display(None) == ""


def test_display_all_makes_json_lines_safe_for_any_reader() -> None:
    record = display_all({"path": HOSTILE, "nested": [UNDECODABLE], "n": 3})
    line = json.dumps(record, ensure_ascii=False)  # even without ASCII escaping
    assert not any(ch in line for ch in RAW) and "\udcff" not in line
    assert record["n"] == 3 and record["nested"] == ["caf\\xe9-\\xff.stl"]


def test_snapshot_file_names_are_safe_short_and_distinct() -> None:
    assert snapshot_file_name("fuze.obj") == "fuze.obj.d3d"
    long_name = "a" * 251 + ".stl"  # 255 bytes: the input exists, "+.d3d" would not fit
    names = [snapshot_file_name(n) for n in (long_name, "b" + long_name[1:], UNDECODABLE, HOSTILE)]
    for name in names:
        assert len(name.encode("utf-8")) <= NAME_MAX_BYTES - 16  # room for a ".N" repeat counter
        assert name.endswith(".stl.d3d") and display(name) == name
    assert len(set(names)) == len(names)
    assert names[2].startswith("caf_-_-")


def _snapshot(**provenance: str) -> Snapshot:
    snap = codec_snapshot(n=64)
    for key, value in provenance.items():
        setattr(snap.provenance, key, value)
    return snap


def test_undecodable_names_survive_the_codec_in_display_form(tmp_path: Path) -> None:
    target = tmp_path / snapshot_file_name(UNDECODABLE)
    _snapshot(original_filename=UNDECODABLE, title=HOSTILE).save(target)
    back = Snapshot.load(target)
    assert back.provenance.original_filename == "caf\\xe9-\\xff.stl"
    assert back.provenance.title == HOSTILE  # valid UTF-8 is kept as it was; shown escaped later


def test_failed_rename_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "taken.d3d").mkdir()  # os.replace onto a folder fails after the data is written
    with pytest.raises(SnapshotWriteError) as info:
        _snapshot().save(tmp_path / "taken.d3d")
    assert info.value.reason == "write_failed" and "taken.d3d" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.d3d"]


def test_full_disk_leaves_no_temp_file(tmp_path: Path) -> None:
    """A write cut short (RLIMIT_FSIZE stands in for a full disk) raises write_failed, leaves nothing."""
    script = (
        "import resource, signal, sys\n"
        "from destill3d_tui.engine.store.snapshot import write_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from pathlib import Path\n"
        "try:\n"
        "    write_atomic(Path(sys.argv[1]), bytes(100_000))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc.reason)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.d3d")], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.stdout.strip() == "SnapshotWriteError write_failed", out.stderr
    assert list(tmp_path.iterdir()) == []
    write_atomic(tmp_path / "ok.d3d", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["ok.d3d"] and (tmp_path / "ok.d3d").read_bytes() == b"data"


def test_undecodable_file_names_queue_and_come_back_as_the_same_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    odd = folder / UNDECODABLE
    odd.write_bytes(b"solid x\nendsolid x\n")
    (folder / "good.stl").write_bytes(b"solid y\nendsolid y\n")
    queue = Queue(Store(f"sqlite:///{tmp_path / 'q.db'}"))
    ids = queue.add_entries(local_entries([folder]))
    assert len(ids) == 2  # the good file beside it is queued too
    rows = {queue.get(i).title: queue.get(i) for i in ids}
    assert set(rows) == {"good", "caf\\xe9-\\xff"}
    row = rows["caf\\xe9-\\xff"]
    assert row.source_id.startswith("file://") and row.source_id.endswith("caf%E9-%FF.stl")
    result = asyncio.run(LocalAdapter().download(row.source_id, tmp_path))
    assert os.fsencode(result.primary) == os.fsencode(odd)
    # its failure message names it: stored with the byte escaped (a raw one stopped the writer)
    (claimed,) = [r for r in queue.claim("w", 2) if r.queue_id == row.queue_id]
    error = describe(FormatError(f"{Path(UNDECODABLE).name}: ASCII STL ends without 'endsolid'"))
    queue.fail(claimed.queue_id, "w", error, "extract")
    assert queue.get(claimed.queue_id).last_error.startswith("caf\\xe9-\\xff.stl: ASCII STL")


def test_headless_lines_and_json_are_escaped() -> None:
    out, err = io.StringIO(), io.StringIO()
    reporter = _Reporter(2, True, out, err)
    reporter(ItemFailed(queue_id=1, model_id=f"local:/m/{HOSTILE}", stage="extract", reason="parse_error",
                        message=f"cannot read {HOSTILE}", will_retry=False, attempts=1))  # fmt: skip
    reporter(ItemStored(queue_id=2, model_id=f"local:/m/{UNDECODABLE}", snapshot_id="s1"))
    for text in (out.getvalue(), err.getvalue()):
        assert not any(ch in text for ch in RAW) and "\udcff" not in text
    failed, stored = map(json.loads, out.getvalue().splitlines())
    assert failed["message"] == "cannot read " + display(HOSTILE)
    assert stored["model_id"] == "local:/m/caf\\xe9-\\xff.stl"
    assert "\\x1b]0;pwned" in err.getvalue()


def test_cli_listings_and_json_show_titles_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from destill3d_tui import cli
    from destill3d_tui.engine.queue import QueueEntry

    monkeypatch.setenv("DESTILL3D_HOME", str(tmp_path / "home"))
    db = tmp_path / "q.db"
    entry = QueueEntry(model_id="test:1", platform="test", source_url="https://x/1", metadata={"title": HOSTILE})
    Queue(Store(f"sqlite:///{db}")).add_entries([entry])
    assert cli.main(["--db", str(db), "queue", "list"]) == 0
    assert cli.main(["--db", str(db), "queue", "list", "--json"]) == 0
    captured = capsys.readouterr()
    assert not any(ch in captured.out + captured.err for ch in RAW)
    assert "\\x1b]0;pwned" in captured.out  # the table (it may wrap the title, not cut its start)
    assert json.loads(captured.out.splitlines()[-1])["title"] == display(HOSTILE)
