"""References to other files are checked before any loader sees the model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from destill3d_tui.engine.errors import FormatError
from destill3d_tui.engine.extract.load import load_geometry
from destill3d_tui.engine.extract.references import check_references

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
OUTSIDE = ["../../../../etc/passwd", "/etc/passwd", "file:///etc/passwd", "http://127.0.0.1:9/x.bin",
           "//evil.example/x.bin", "C:\\\\Windows\\\\x.bin", "sub/../../x.bin", "%2e%2e/%2e%2e/x.bin"]  # fmt: skip


def _gltf(tmp_path: Path, uri: str, key: str = "buffers") -> Path:
    inline = {"byteLength": 36, "uri": "data:application/octet-stream;base64,AA=="}
    doc = {"asset": {"version": "2.0"}, "buffers": [inline]}
    doc[key] = [{"byteLength": 36, "uri": uri}] if key == "buffers" else [{"uri": uri}]
    path = tmp_path / "item" / "model.gltf"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("uri", OUTSIDE)
@pytest.mark.parametrize("key", ["buffers", "images"])
def test_gltf_reference_outside_is_refused(tmp_path: Path, uri: str, key: str) -> None:
    with pytest.raises(FormatError) as info:
        check_references(_gltf(tmp_path, uri, key))
    assert info.value.reason == "reference_outside_item"


def test_gltf_inside_and_data_uris_pass(tmp_path: Path) -> None:
    assert check_references(_gltf(tmp_path, "buffers/model.bin")) == ["buffers/model.bin"]
    assert check_references(CORPUS / "gltf/rgb_cube_with_primitives.gltf") == []
    assert check_references(CORPUS / "gltf/BoxTextured.gltf") == ["BoxTextured0.bin", "CesiumLogoFlat.png"]


def test_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    path = _gltf(tmp_path, "link.bin")
    os.symlink("/etc/hostname", path.parent / "link.bin")
    with pytest.raises(FormatError) as info:
        check_references(path)
    assert info.value.reason == "reference_outside_item"


@pytest.mark.parametrize("ref", OUTSIDE[:6])
def test_obj_mtllib_outside_is_refused(tmp_path: Path, ref: str) -> None:
    path = tmp_path / "m.obj"
    path.write_text(f"mtllib {ref}\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(FormatError) as info:
        load_geometry(path)
    assert info.value.reason == "reference_outside_item"


def test_mtl_texture_outside_is_refused_and_corpus_mtl_passes(tmp_path: Path) -> None:
    (tmp_path / "m.mtl").write_text("newmtl a\nKd 1 1 1\nmap_Kd -s 1 1 1 ../../secret.png\n")
    path = tmp_path / "m.obj"
    path.write_text("mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(FormatError) as info:
        check_references(path)
    assert info.value.reason == "reference_outside_item"
    assert "capsule.mtl" in check_references(CORPUS / "obj/capsule.obj")
    assert "fuze uv.jpg" in check_references(CORPUS / "obj/fuze.obj")  # a missing texture is no escape


@pytest.mark.parametrize("ref", ["../../etc/passwd", "file:///etc/passwd", "http://127.0.0.1:9/t.png"])
def test_dae_image_outside_is_refused(tmp_path: Path, ref: str) -> None:
    src = (CORPUS / "dae/duck.dae").read_text()
    assert "<init_from>" in src
    path = tmp_path / "duck.dae"
    start = src.index("<init_from>") + len("<init_from>")
    path.write_text(src[:start] + ref + src[src.index("</init_from>", start) :])
    with pytest.raises(FormatError) as info:
        check_references(path)
    assert info.value.reason == "reference_outside_item"


def test_dae_external_entity_is_not_resolved(tmp_path: Path) -> None:
    path = tmp_path / "x.dae"
    dtd = '<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    body = '<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema"><asset>&x;</asset></COLLADA>'
    path.write_text(f'<?xml version="1.0"?>{dtd}{body}')
    with pytest.raises(FormatError) as info:
        load_geometry(path)
    assert info.value.reason == "reference_outside_item"


def test_corpus_dae_and_glb_pass(tmp_path: Path) -> None:
    check_references(CORPUS / "dae/duck.dae")
    assert check_references(CORPUS / "glb/Duck.glb") == []
    copy = tmp_path / "TestScene.gltf"
    shutil.copy(CORPUS / "gltf/TestScene.gltf", copy)
    assert check_references(copy) == ["TestScene.bin"]  # a missing companion is not an escape
