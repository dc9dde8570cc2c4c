"""Format detection: magic bytes, then the extension, then content sniffing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from destill3d_tui.engine.errors import FormatError
from destill3d_tui.engine.formats import FORMATS, detect_format, stl_encoding

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PRIMARY = [e for e in json.loads((CORPUS / "MANIFEST.json").read_text()) if e["role"] == "primary"]


@pytest.mark.parametrize("entry", PRIMARY, ids=[e["path"] for e in PRIMARY])
def test_corpus_file_detected_as_its_format(entry: dict) -> None:
    assert detect_format(CORPUS / entry["path"]) == entry["format"].upper()


@pytest.mark.parametrize("entry", PRIMARY, ids=[e["path"] for e in PRIMARY])
def test_detected_without_extension(entry: dict, tmp_path: Path) -> None:
    """Renamed to a bare name, every corpus file is still recognised by its content."""
    target = tmp_path / "model"
    shutil.copy(CORPUS / entry["path"], target)
    found = detect_format(target)
    expected = entry["format"].upper()
    assert found == expected or {found, expected} == {"XYZ", "PTS"}


def test_magic_wins_over_a_wrong_extension(tmp_path: Path) -> None:
    target = tmp_path / "actually_step.stl"
    shutil.copy(CORPUS / "step/cuboid.step", target)
    assert detect_format(target) == "STEP"
    glb = tmp_path / "duck.obj"
    shutil.copy(CORPUS / "glb/Duck.glb", glb)
    assert detect_format(glb) == "GLB"


def test_binary_stl_whose_header_starts_with_solid() -> None:
    path = CORPUS / "stl/unit_cube.STL"
    head = path.read_bytes()[:84]
    assert head.startswith(b"solid")
    assert stl_encoding(head, path.stat().st_size) == "binary"
    ascii_path = CORPUS / "stl/Spider_ascii.stl"
    assert stl_encoding(ascii_path.read_bytes()[:84], ascii_path.stat().st_size) == "ascii"


def test_laz_and_copc_detected_as_laz(tmp_path: Path) -> None:
    for name in ("laz/simple.laz", "laz/simple.copc.laz"):
        target = tmp_path / "cloud.las"  # the point-format bit says compressed, whatever the name
        shutil.copy(CORPUS / name, target)
        assert detect_format(target) == "LAZ"


@pytest.mark.parametrize("body", [b"\x89PNG\r\n\x1a\n" + bytes(64), b"hello world, no geometry here\n", b""])
def test_unknown_content_is_format_unsupported(tmp_path: Path, body: bytes) -> None:
    target = tmp_path / "mystery.bin"
    target.write_bytes(body)
    with pytest.raises(FormatError) as info:
        detect_format(target)
    assert info.value.reason == "format_unsupported"
    assert "STEP" in str(info.value)


def test_every_format_has_a_corpus_file() -> None:
    assert {e["format"].upper() for e in PRIMARY} == set(FORMATS)
