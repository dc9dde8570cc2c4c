"""The local platform's folder scan: one scan for the queue (``queue add``) and for search."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from destill3d_tui.engine.acquire.base import SearchFilters
from destill3d_tui.engine.acquire.platforms.local import LocalAdapter, model_files, source_id_for
from destill3d_tui.engine.errors import NotFoundError
from destill3d_tui.engine.queue import local_entries

UNDECODABLE = os.fsdecode(b"caf\xe9-\xff.stl")  # Latin-1 bytes: not UTF-8


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.stl").write_bytes(b"solid a\nendsolid a\n")
    (folder / UNDECODABLE).write_bytes(b"solid x\nendsolid x\n")
    (folder / "notes.txt").write_text("not a model")
    (folder / ".hidden.stl").write_bytes(b"solid h\nendsolid h\n")
    (folder / "sub" / "b.obj").write_text("v 0 0 0\n")
    (folder / "link.stl").symlink_to(folder / "a.stl")
    return folder


def test_scan_picks_model_files_and_follows_no_links(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert [p.name for p in model_files([folder])] == sorted(["a.stl", UNDECODABLE])
    assert sorted(p.name for p in model_files([folder], recursive=True)) == sorted(["a.stl", "b.obj", UNDECODABLE])
    assert [p.name for p in model_files([folder], True, "*.OBJ")] == ["b.obj"]  # a glob, any case
    with pytest.raises(NotFoundError):
        model_files([folder / "missing"])


def test_queue_entries_and_search_results_share_one_source_id(tmp_path: Path) -> None:
    """Search used to rebuild a path from the queue entry's source id, which for a name that is
    not UTF-8 is a file URI: its results named a path that does not exist."""
    folder = _folder(tmp_path)
    queued = {e.source_id for e in local_entries([folder], recursive=True)}
    page = asyncio.run(LocalAdapter().search(str(folder), SearchFilters(per_page=50)))
    found = {m.source_id for m in page.results}
    assert found == queued and page.total == 3
    odd = source_id_for(folder / UNDECODABLE)
    assert odd in found and odd.startswith("file://")
    result = asyncio.run(LocalAdapter().download(odd, tmp_path))
    assert os.fsencode(result.primary) == os.fsencode(folder / UNDECODABLE)
