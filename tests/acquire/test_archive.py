"""Archive safety against the shared bad-input generator's archives (zip slip, bombs, links, devices)."""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

from destill3d_tui.engine.archive import ArchiveLimits, choose_model_files, is_archive, safe_extract
from destill3d_tui.engine.errors import ArchiveError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the archive part of shared/badinputs/make_bad_inputs.py (the whole corpus takes ~12 s)."""
    spec = importlib.util.spec_from_file_location("make_bad_inputs", SHARED / "badinputs" / "make_bad_inputs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("badarchives")
    module.OUT = str(out)
    module.make_archives()
    return out


def item_dir(tmp_path: Path) -> Path:
    """A deep working dir, so ../../ escapes land inside tmp_path where we can look for them."""
    return tmp_path / "a" / "b" / "work"


def escaped(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("destill3d_*")] + list(Path("/tmp").glob("destill3d_*evil*"))


def test_valid_zip_gives_the_model_and_ignores_the_rest(archives: Path, tmp_path: Path) -> None:
    files = safe_extract(archives / "valid_zip_with_stl.zip", item_dir(tmp_path))
    assert [p.relative_to(item_dir(tmp_path).resolve()).as_posix() for p in files] == ["model/tet.stl"]
    assert choose_model_files(files) == files
    assert is_archive(archives / "valid_zip_with_stl.zip")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zip_slip_path_traversal.zip", "unsafe_archive"),
        ("zip_symlink_entry.zip", "unsafe_archive"),
        ("zip_bomb_10MB_zeros.zip", "too_large"),
        ("zip_bomb_512MB_zeros.zip", "too_large"),
        ("zip_encrypted_entry.zip", "unsafe_archive"),
        ("zip_truncated_no_central_directory.zip", "unsafe_archive"),
        ("zip_entry_name_1000_chars.zip", "unsafe_archive"),
        ("zip_is_actually_html.zip", "unsafe_archive"),
        ("tar_path_traversal.tar", "unsafe_archive"),
        ("tar_symlink_escape.tar", "unsafe_archive"),
        ("tar_device_and_setuid.tar", "unsafe_archive"),
    ],
)
def test_hostile_archives_are_refused_before_writing(archives: Path, tmp_path: Path, name: str, reason: str) -> None:
    if not (archives / name).exists():
        pytest.fail(f"generator did not write {name}")
    dest = item_dir(tmp_path)
    with pytest.raises(ArchiveError) as info:
        safe_extract(archives / name, dest)
    assert info.value.reason == reason
    assert not any(p.is_file() for p in dest.rglob("*"))
    assert escaped(tmp_path) == []


def test_overlapping_entries_are_detected_even_without_ratio_caps(archives: Path, tmp_path: Path) -> None:
    loose = ArchiveLimits(max_entries=100_000, max_total_bytes=1 << 40, max_ratio=1e12)
    with pytest.raises(ArchiveError) as info:
        safe_extract(archives / "zip_overlapping_entries_1000x.zip", item_dir(tmp_path), loose)
    assert info.value.reason == "archive_bomb" and "overlap" in str(info.value)


def test_entry_count_cap(archives: Path, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError) as info:
        safe_extract(archives / "zip_10000_empty_entries.zip", item_dir(tmp_path), ArchiveLimits(max_entries=5000))
    assert info.value.reason == "too_large" and "5000" in str(info.value)


def test_nested_archives_are_never_opened(archives: Path, tmp_path: Path) -> None:
    files = safe_extract(archives / "zip_bomb_nested_3_levels.zip", item_dir(tmp_path))
    assert files == []
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) == 0


def test_header_that_under_declares_size_is_caught_while_writing(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("m.stl", b"x" * 5000)
    data = bytearray(buf.getvalue())
    # shrink the central directory's uncompressed size; the stored data still holds 5000 bytes
    cd = data.index(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (100).to_bytes(4, "little")
    path = tmp_path / "lying.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        safe_extract(path, item_dir(tmp_path))
    assert not any(p.is_file() for p in item_dir(tmp_path).rglob("*"))


def test_choose_prefers_single_file_formats(tmp_path: Path) -> None:
    for name, size in [("scene.gltf", 10), ("scene.bin", 100), ("mesh.obj", 50), ("part.stl", 20), ("a.pdf", 5)]:
        (tmp_path / name).write_bytes(b"x" * size)
    chosen = choose_model_files(tmp_path.iterdir())
    assert [p.name for p in chosen] == ["part.stl", "mesh.obj", "scene.gltf"]


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/part.stl", b"first")
        z.writestr("m/part.stl", b"second, overwriting the first")
    path = tmp_path / "dupes.zip"
    path.write_bytes(buf.getvalue())
    with pytest.raises(ArchiveError) as info:
        safe_extract(path, item_dir(tmp_path))
    assert info.value.reason == "unsafe_archive"
    assert not any(p.is_file() for p in item_dir(tmp_path).rglob("*"))
