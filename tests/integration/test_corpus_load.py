"""Every primary corpus file loads, or (only when it holds no surface and no points) fails with a reason.

Counts and bounds are compared with the manifest's ``facts`` (what trimesh / OCP / Open3D /
laspy saw when the corpus was built), within tolerances. CAD files load at the preview preset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from destill3d_tui.engine.errors import ExtractionError
from destill3d_tui.engine.extract.load import load_geometry
from destill3d_tui.engine.extract.types import ExtractOptions, LoadedGeometry, TessellationOptions

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PRIMARY = [e for e in json.loads((CORPUS / "MANIFEST.json").read_text()) if e["role"] == "primary"]
PREVIEW = ExtractOptions(tessellation=TessellationOptions.from_preset("preview"))
CAD = {"step", "iges", "brep"}
CLOUDS = {"pcd", "las", "laz", "xyz", "pts"}


def holds_nothing(entry: dict) -> bool:
    """Files whose facts show no surface and no points: CAD without faces, FBX without meshes."""
    facts = entry["facts"]
    if entry["format"] in CAD:
        return facts.get("faces", 0) == 0
    return False


def _bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(axis=0), points.max(axis=0)


def _close(a: np.ndarray, b: list[float], scale: float, rel: float = 1e-4) -> bool:
    return bool(np.allclose(a, np.asarray(b, dtype=float), atol=rel * scale + 1e-6, rtol=0))


@pytest.mark.parametrize("entry", PRIMARY, ids=[e["path"] for e in PRIMARY])
def test_corpus_file_loads(entry: dict) -> None:
    path = CORPUS / entry["path"]
    if holds_nothing(entry):
        with pytest.raises(ExtractionError) as info:
            load_geometry(path, PREVIEW)
        assert info.value.reason in ("empty_geometry", "format_unsupported")
        assert path.name in str(info.value)
        return
    geometry = load_geometry(path, PREVIEW)
    assert geometry.format == entry["format"].upper()
    assert np.isfinite(geometry.vertices).all()
    if entry["path"] == "fbx/maya_cube_6100_binary.fbx":
        _check_fbx61(geometry)
        return
    {"cad": _check_cad, "cloud": _check_cloud}.get(_family(entry), _check_mesh)(geometry, entry)


def _check_fbx61(geometry: LoadedGeometry) -> None:
    """Open3D (assimp) saw no mesh in FBX 6.1, so the facts hold none; it is the 7.1 file's cube."""
    assert len(geometry.faces) == 12 and len(geometry.vertices) == 8
    low, high = _bounds(geometry.vertices)
    assert np.allclose(low, -0.5) and np.allclose(high, 0.5)


def _family(entry: dict) -> str:
    if entry["format"] in CAD:
        return "cad"
    if entry["format"] in CLOUDS or "points" in entry["facts"]:
        return "cloud"
    return "mesh"


def _check_mesh(geometry: LoadedGeometry, entry: dict) -> None:
    facts = entry["facts"]
    faces = geometry.faces
    assert faces is not None and faces.shape[1] == 3
    assert faces.min() >= 0 and faces.max() < len(geometry.vertices)
    instanced = facts.get("scene_node_count", 1) != facts.get("geometry_count", facts.get("mesh_count", 1))
    if instanced:  # scene nodes reuse geometry: flattening repeats it once per node
        assert len(faces) >= facts["faces"]
    else:
        assert len(faces) == facts["faces"]
        assert len(geometry.vertices) == facts["vertices"]
    low, high = _bounds(geometry.vertices)
    diag = float(np.linalg.norm(np.subtract(facts["bounds_max"], facts["bounds_min"])))
    assert _close(low, facts["bounds_min"], diag) and _close(high, facts["bounds_max"], diag)


def _check_cloud(geometry: LoadedGeometry, entry: dict) -> None:
    facts = entry["facts"]
    assert geometry.faces is None
    assert len(geometry.vertices) == facts["points"] - facts.get("nonfinite_points", 0)
    low, high = _bounds(geometry.vertices)
    diag = float(np.linalg.norm(np.subtract(facts["bounds_max"], facts["bounds_min"])))
    if _close(low, facts["bounds_min"], diag) and _close(high, facts["bounds_max"], diag):
        return
    # simple1_3.las: the facts hold raw integer coordinates; scaled by the header they must agree
    import laspy

    header = laspy.open(str(CORPUS / entry["path"])).header
    scaled_min = np.asarray(facts["bounds_min"]) * header.scales + header.offsets
    scaled_max = np.asarray(facts["bounds_max"]) * header.scales + header.offsets
    diag = float(np.linalg.norm(scaled_max - scaled_min))
    assert _close(low, list(scaled_min), diag) and _close(high, list(scaled_max), diag)


def _check_cad(geometry: LoadedGeometry, entry: dict) -> None:
    facts = entry["facts"]
    assert geometry.solid_count == facts["solids"]
    assert len(geometry.faces) > 0
    assert geometry.tessellation["preset"] == "preview" and geometry.tessellation["linear_deflection"] > 0
    low, high = _bounds(geometry.vertices)
    fmin, fmax = np.asarray(facts["bounds_min"]), np.asarray(facts["bounds_max"])
    diag = float(np.linalg.norm(fmax - fmin))
    # OpenCASCADE's boxes enclose untrimmed surfaces and tolerances: the mesh lies inside them
    assert (low >= fmin - 0.02 * diag).all() and (high <= fmax + 0.02 * diag).all()
    assert np.linalg.norm(high - low) >= 0.5 * diag


def test_step_assembly_keeps_every_solid_in_place() -> None:
    """as1-oc-214: 18 solids in nested sub-assemblies, each at its own location."""
    geometry = load_geometry(CORPUS / "step/as1-oc-214.stp", PREVIEW)
    assert geometry.solid_count == 18
    low, high = _bounds(geometry.vertices)
    assert np.allclose(low, [-10, 0, -4], atol=0.01) and np.allclose(high, [190, 150, 80], atol=0.01)


def test_relative_deflection_scales_with_the_part() -> None:
    fine = ExtractOptions(tessellation=TessellationOptions.from_preset("standard"))
    coarse = load_geometry(CORPUS / "brep/Ball.brep", PREVIEW)
    dense = load_geometry(CORPUS / "brep/Ball.brep", fine)
    assert len(dense.faces) > len(coarse.faces)
    diag = float(np.linalg.norm(np.ptp(dense.vertices, axis=0)))
    assert dense.tessellation["linear_deflection"] == pytest.approx(0.001 * diag, rel=0.05)


def test_gltf_reports_y_up_and_ascii_fbx6_says_why(tmp_path: Path) -> None:
    assert load_geometry(CORPUS / "glb/Duck.glb").up_axis == "y"
    old = tmp_path / "old.fbx"
    old.write_text("; FBX 6.1.0 project file\nFBXHeaderExtension:  {\n}\nObjects:  {\n}\n")
    with pytest.raises(ExtractionError) as info:
        load_geometry(old)
    assert info.value.reason == "format_unsupported"
    assert "FBX 6.1" in str(info.value) and "Re-export" in str(info.value)


def test_nan_points_are_dropped_with_a_warning() -> None:
    geometry = load_geometry(CORPUS / "pcd/table_scene_mug_stereo_textured.pcd")
    assert len(geometry.vertices) == 307200 - 97920
    assert any("non-finite" in w for w in geometry.warnings)


@pytest.mark.parametrize("cut", [30, 200, 1000, 5000, 9000, 12000])
def test_truncated_fbx6_fails_cleanly(tmp_path: Path, cut: int) -> None:
    """Our own FBX 6 reader checks every length against the bytes present."""
    data = (CORPUS / "fbx/maya_cube_6100_binary.fbx").read_bytes()
    target = tmp_path / "cut.fbx"
    target.write_bytes(data[:cut])
    with pytest.raises(ExtractionError) as info:
        load_geometry(target)
    assert info.value.reason in ("parse_error", "too_large", "format_unsupported")


def test_fbx6_hierarchy_composes_parent_transforms() -> None:
    """A child model inside a translated, rotated, scaled parent lands where the scene puts it."""
    from destill3d_tui.engine.extract.loaders.fbx_legacy import Node, _world_matrices

    def model(name: bytes, **lcl: list[float]) -> Node:
        props = [Node("Property", [f"Lcl {k}".encode(), b"Vector3D", b"A", *v]) for k, v in lcl.items()]
        return Node("Model", [name + b"\x00\x01Model", b"Mesh"], [Node("Properties60", [], props)])

    parent = model(b"parent", Translation=[10.0, 0.0, 0.0], Rotation=[0.0, 0.0, 90.0], Scaling=[2.0, 2.0, 2.0])
    child = model(b"child", Translation=[1.0, 0.0, 0.0])
    loop_a, loop_b = model(b"a", Translation=[1.0, 0.0, 0.0]), model(b"b", Translation=[0.0, 1.0, 0.0])
    links = Node("Connections", [], [
        Node("Connect", [b"OO", b"child\x00\x01Model", b"parent\x00\x01Model"]),
        Node("Connect", [b"OO", b"parent\x00\x01Model", b"Scene\x00\x01Model"]),  # the scene root: not a model
        Node("Connect", [b"OO", b"a\x00\x01Model", b"b\x00\x01Model"]),
        Node("Connect", [b"OO", b"b\x00\x01Model", b"a\x00\x01Model"]),  # a cycle must not hang
    ])  # fmt: skip
    world = _world_matrices([parent, child, loop_a, loop_b], links)
    origin = np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose((world[0] @ origin)[:3], [10, 0, 0], atol=1e-12)
    # child origin: its own +1 in x, scaled by 2 and turned 90 degrees about z by the parent, then moved
    np.testing.assert_allclose((world[1] @ origin)[:3], [10, 2, 0], atol=1e-12)
    np.testing.assert_allclose((world[2] @ origin)[:3], [1, 1, 0], atol=1e-12)


def _area_and_volume(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return float(np.linalg.norm(cross, axis=1).sum() / 2), float(np.einsum("ij,ij->i", tri[:, 0], cross).sum() / 6)


@pytest.mark.parametrize("name", ["step/as1-oc-214.stp", "step/M6-1x12-countersunk-screw.step"])
def test_bulk_cad_triangles_equal_the_exact_walk(name: str) -> None:
    """OCCT's STL writer (float32) gives the exact walk's triangles: same count, area and signed volume."""
    from destill3d_tui.engine.extract.loaders import cad
    from destill3d_tui.engine.extract.types import TessellationOptions

    shape, _ = cad._read_step(CORPUS / name)
    cad._tessellate(shape, TessellationOptions())
    bulk_v, bulk_f, bulk_skipped = cad._triangles_bulk(shape)
    walk_v, walk_f, walk_skipped = cad._triangles(shape)
    assert len(bulk_f) == len(walk_f) and bulk_skipped == walk_skipped
    bulk, walk = _area_and_volume(bulk_v, bulk_f), _area_and_volume(walk_v, walk_f)
    np.testing.assert_allclose(bulk, walk, rtol=1e-5)
    assert walk[1] > 0  # outward: the reversed faces were flipped on both paths


def test_bulk_cad_triangles_fall_back_far_from_the_origin() -> None:
    """A part 1e7 units from the origin would lose detail in float32: the exact walk is used."""
    from OCP.BRepBuilderAPI import BRepBuilderAPI_Transform
    from OCP.gp import gp_Trsf, gp_Vec

    from destill3d_tui.engine.extract.loaders import cad
    from destill3d_tui.engine.extract.types import TessellationOptions

    shape, _ = cad._read_step(CORPUS / "step/M6-1x12-countersunk-screw.step")
    move = gp_Trsf()
    move.SetTranslation(gp_Vec(1e7, 0, 0))
    far = BRepBuilderAPI_Transform(shape, move, True).Shape()
    cad._tessellate(far, TessellationOptions())
    bulk_v, bulk_f, _ = cad._triangles_bulk(far)
    walk_v, walk_f, _ = cad._triangles(far)
    np.testing.assert_array_equal(bulk_v, walk_v)
    np.testing.assert_array_equal(bulk_f, walk_f)
