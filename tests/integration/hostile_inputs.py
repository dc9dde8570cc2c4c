"""The project's own hostile files for issue 14 (readers): amplification, lying counts, case and content.

Written in the spirit of ../shared/badinputs/make_bad_inputs.py (same manifest classes), so
test_badinputs.py runs them with the shared corpus. Each file is small and deterministic.

    python -m tests.integration.hostile_inputs OUT_DIR      # writes the files + hostile_manifest.json
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
MODEL_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
TET = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
TET_FACES = ((0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3))


# ---------------------------------------------------------------- 3MF


def _zip_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))  # fixed: the same bytes on every run
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def threemf(model: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(_zip_member("[Content_Types].xml"), '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://'
                   'schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="'
                   'application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="model" '
                   'ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>')  # fmt: skip
        z.writestr(_zip_member("_rels/.rels"), '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://'
                   'schemas.openxmlformats.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.'
                   'model" Id="rel0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
                   "</Relationships>")  # fmt: skip
        z.writestr(_zip_member("3D/3dmodel.model"), model)
    return buf.getvalue()


def _mesh_object(oid: int) -> str:
    verts = "".join(f'<vertex x="{x:g}" y="{y:g}" z="{z:g}"/>' for x, y, z in TET)
    tris = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in TET_FACES)
    mesh = f"<mesh><vertices>{verts}</vertices><triangles>{tris}</triangles></mesh>"
    return f'<object id="{oid}" type="model">{mesh}</object>'


def _model(resources: str, build: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<model unit="millimeter" xmlns="{MODEL_NS}">'
            f"<resources>{resources}</resources><build>{build}</build></model>\n")  # fmt: skip


def threemf_build_items(items: int) -> bytes:
    """One tetrahedron placed ``items`` times by build items."""
    place = (f"1 0 0 0 1 0 0 0 1 {i % 1000} {i // 1000} 0" for i in range(items))
    build = "".join(f'<item objectid="1" transform="{matrix}"/>' for matrix in place)
    return threemf(_model(_mesh_object(1), build))


def threemf_component_graph(width: int, depth: int) -> bytes:
    """Object k+1 holds ``width`` components of object k: width**depth tetrahedra from ``depth`` objects."""
    objects = [_mesh_object(1)]
    for level in range(2, depth + 2):
        comps = "".join(f'<component objectid="{level - 1}" transform="1 0 0 0 1 0 0 0 1 {i} 0 0"/>'
                        for i in range(width))  # fmt: skip
        objects.append(f'<object id="{level}" type="model"><components>{comps}</components></object>')
    return threemf(_model("".join(objects), f'<item objectid="{depth + 1}"/>'))


# ---------------------------------------------------------------- glTF / GLB


def _gltf_doc(primitives: int = 1, nodes: int = 1, component_type: int = 5126) -> dict:
    data = TET.tobytes() + np.array(TET_FACES, dtype="<u2").tobytes()
    uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    positions = {"bufferView": 0, "componentType": component_type, "count": 4, "type": "VEC3",
                 "min": [0, 0, 0], "max": [1, 1, 1]}  # fmt: skip
    return {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(data), "uri": uri}],
        "bufferViews": [{"buffer": 0, "byteLength": 48}, {"buffer": 0, "byteOffset": 48, "byteLength": 24}],
        "accessors": [positions, {"bufferView": 1, "componentType": 5123, "count": 12, "type": "SCALAR"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}] * primitives}],
        "nodes": [{"mesh": 0, "translation": [i % 100, i // 100, 0]} for i in range(nodes)],
        "scenes": [{"nodes": list(range(nodes))}],
        "scene": 0,
    }


def _buffer_longer_than_its_data() -> dict:
    """byteLength 1000 and a view to byte 948 over 72 bytes of data: trimesh said only "AssertionError:"."""
    doc = _gltf_doc()
    doc["buffers"][0]["byteLength"] = 1000
    doc["bufferViews"][1]["byteLength"] = 900
    return doc


def glb(doc: dict, *, bin_len_delta: int = 0) -> bytes:
    """A GLB whose JSON chunk is ``doc`` with one BIN chunk; ``bin_len_delta`` makes the chunk length lie."""
    data = base64.b64decode(doc["buffers"][0].pop("uri").split(",", 1)[1])
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    binary = data + b"\0" * (-len(data) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(binary) + bin_len_delta, 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


# ---------------------------------------------------------------- DAE


def dae_instance_graph(levels: int) -> str:
    """Node k instances node k-1 twice: 2**levels triangles from a 4 KB file."""
    nodes = ['<node id="n0"><instance_geometry url="#g"/></node>']
    nodes += [f'<node id="n{k}"><instance_node url="#n{k - 1}"/><instance_node url="#n{k - 1}"/></node>'
              for k in range(1, levels + 1)]  # fmt: skip
    return ('<?xml version="1.0" encoding="utf-8"?>\n<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema" '
            'version="1.4.1"><asset><unit meter="1"/><up_axis>Z_UP</up_axis></asset><library_geometries>'
            '<geometry id="g"><mesh><source id="p"><float_array id="pa" count="9">0 0 0 1 0 0 0 1 0</float_array>'
            '<technique_common><accessor source="#pa" count="3" stride="3"><param name="X" type="float"/>'
            '<param name="Y" type="float"/><param name="Z" type="float"/></accessor></technique_common></source>'
            '<vertices id="v"><input semantic="POSITION" source="#p"/></vertices><triangles count="1"><input '
            'semantic="VERTEX" source="#v" offset="0"/><p>0 1 2</p></triangles></mesh></geometry>'
            f'</library_geometries><library_nodes>{"".join(nodes)}</library_nodes><library_visual_scenes>'
            f'<visual_scene id="s"><node id="top"><instance_node url="#n{levels}"/></node></visual_scene>'
            '</library_visual_scenes><scene><instance_visual_scene url="#s"/></scene></COLLADA>\n')  # fmt: skip


# ---------------------------------------------------------------- CAD


def brep_location_chain(levels: int) -> str:
    """Location k+2 is location k+1 composed with itself: 2**levels elementary locations in one chain."""
    lines = ["DBRep_DrawableShape", "", "CASCADE Topology V1, (c) Matra-Datavision", f"Locations {levels + 2}"]
    for shift in ("1", "2"):  # two different elementary locations, so the chain cannot merge powers
        lines += ["1", f"1 0 0 {shift}", "0 1 0 0", "0 0 1 0"]
    lines.append("2  1 1 2 1 0")
    lines += [f"2  {k} 1 {k} 1 0" for k in range(3, levels + 2)]
    lines += ["Curve2ds 0", "Curves 0", "Polygon3D 0", "PolygonOnTriangulations 0", "Surfaces 0",
              "Triangulations 0", "", "TShapes 1", "Ve", "1e-07", "0 0 0", "0 0", "", "0101101", "*",
              "+1 0"]  # fmt: skip
    return "\n".join(lines) + "\n"


def step_with_coordinate(value: str) -> str:
    """The corpus cuboid with one vertex moved to ``value`` (e.g. ``1.E400``, beyond any float)."""
    text = (CORPUS / "step" / "cuboid.step").read_text()
    start = text.index("CARTESIAN_POINT")
    open_, close = text.index("(", text.index("(", start) + 1), text.index(")", start)
    coords = text[open_ + 1 : close].split(",")
    return text[: open_ + 1] + ",".join([value, *coords[1:]]) + text[close:]


def iges_box_far_away(value: str = "9.9D307") -> str:
    """An IGES box (written by OpenCASCADE) with every ``3.`` coordinate replaced by ``value``."""
    out = []
    for line in _iges_box().splitlines():
        if line[72:73] == "P":
            data = re.sub(r"(?<=[,;])3\.(?=[,;])", value, line[:64]).rstrip()
            line = (data.ljust(64) if len(data) <= 64 else line[:64]) + line[64:]
        out.append(line)
    return "\n".join(out) + "\n"


def _iges_box() -> str:
    import tempfile

    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox
    from OCP.gp import gp_Pnt
    from OCP.IGESControl import IGESControl_Writer

    from destill3d_tui.engine.extract.loaders.cad import quiet_occt

    quiet_occt()
    writer = IGESControl_Writer("MM", 1)
    writer.AddShape(BRepPrimAPI_MakeBox(gp_Pnt(0, 0, 0), gp_Pnt(1, 2, 3)).Shape())
    writer.ComputeModel()
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "box.igs"
        writer.Write(str(target))
        return target.read_text()


# ---------------------------------------------------------------- points and meshes


def las(xyz: np.ndarray, scales: tuple[float, float, float] = (0.01, 0.01, 0.01), vlrs: int = 0) -> bytes:
    """LAS 1.2, point format 0: a 227-byte header declaring ``vlrs`` VLRs (none present), then ``xyz`` (n, 3) ints."""
    header = bytearray(227)
    header[0:4] = b"LASF"
    header[24:26] = bytes([1, 2])
    header[94:96] = struct.pack("<H", 227)
    header[96:100] = struct.pack("<I", 227)  # offset to point data
    header[100:104] = struct.pack("<I", vlrs)  # number of variable-length records
    header[105:107] = struct.pack("<H", 20)
    header[107:111] = struct.pack("<I", len(xyz))
    header[131:155] = struct.pack("<3d", *scales)
    header[179:227] = struct.pack("<6d", 1, 0, 1, 0, 1, 0)
    points = np.zeros(len(xyz), dtype=[("xyz", "<i4", 3), ("rest", "V8")])
    points["xyz"] = xyz
    return bytes(header) + points.tobytes()


def las_vlr_count(count: int) -> bytes:
    """Four points and a header declaring ``count`` VLRs (none present)."""
    return las(np.r_[np.zeros((1, 3)), np.eye(3) * 100].astype("<i4"), vlrs=count)


def las_one_point_overflows() -> bytes:
    """x scale 1e300: x = 0 for 199 points (a plane), x = 2^31-1 for one, which overflows to inf."""
    rng = np.random.default_rng(0)
    xyz = np.c_[np.zeros(200), rng.integers(0, 1000, size=(200, 2))].astype("<i4")
    xyz[7, 0] = 2**31 - 1
    return las(xyz, scales=(1e300, 0.01, 0.01))


def ply_ascii_list_count(count: int) -> str:
    head = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
    head += "element face 4\nproperty list uint int vertex_indices\nend_header\n"
    return head + _rows(TET) + f"{count} 0 2 1\n" + _rows(TET_FACES[1:], "3 ")


def ply_face_without_properties() -> bytes:
    """A PLY face element without a property line: trimesh fails with "data type '' not understood" or an
    UnboundLocalError (prop_pop), depending on the bytes after the header."""
    head = b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
    head += b"property float z\nelement face 4\nend_header\n"
    return head + TET.tobytes() + np.array([3, 0, 2, 1] * 4, dtype="u1").tobytes()


def ply_unknown_type() -> str:
    """``property Mloat x``: trimesh said only "KeyError: 'Mloat'"."""
    return ply_ascii_list_count(3).replace("property float x", "property Mloat x")


def pcd_unknown_type() -> str:
    """``TYPE F Q F``: the reader said "PCD header invalid (('Q', 4))"."""
    return pcd_upper_case().replace("TYPE F F F", "TYPE F Q F")


def off_face_corners(corners: int) -> str:
    return "OFF\n4 4 0\n" + _rows(TET) + f"{corners} 0 2 1\n" + _rows(TET_FACES[1:], "3 ")


def _rows(values, prefix: str = "") -> str:
    return "".join(prefix + " ".join(f"{v:g}" for v in row) + "\n" for row in values)


def stl_ascii() -> str:
    rows = []
    for face in TET_FACES:
        corners = _rows(TET[list(face)], "  vertex ")
        rows.append(f"facet normal 0 0 0\n outer loop\n{corners} endloop\nendfacet\n")
    return "solid tet\n" + "".join(rows) + "endsolid tet\n"


def stl_binary() -> bytes:
    records = b"".join(struct.pack("<12fH", 0, 0, 0, *TET[list(face)].ravel(), 0) for face in TET_FACES)
    return b"binary tetrahedron".ljust(80, b" ") + struct.pack("<I", len(TET_FACES)) + records


def pcd_upper_case() -> str:
    return ("# .PCD v0.7\nVERSION 0.7\nFIELDS X Y Z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 4\nHEIGHT 1\n"
            "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA ascii\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n")  # fmt: skip


# ---------------------------------------------------------------- the list

LIM, REJ, SAN, ACC = "resource_limit", "reject", "reject_or_sanitize", "accept"
Maker = Callable[[], "str | bytes"]
# fmt: off
CASES: list[tuple[str, Maker, str, str, str]] = [  # file, maker, expect, reason the fix gives, what
    ("h14_3mf_100k_build_items.3mf", lambda: threemf_build_items(100_000), LIM, "too_large", "100,000 build items"),
    ("h14_3mf_components_300_wide_25_deep.3mf", lambda: threemf_component_graph(300, 25), LIM, "too_large",
     "300**25 component instances"),
    ("h14_gltf_2000_nodes_x_5000_primitives.gltf", lambda: json.dumps(_gltf_doc(5000, 2000)), LIM, "too_large",
     "10M primitive instances"),
    ("h14_dae_instance_graph_2pow40.dae", lambda: dae_instance_graph(40), LIM, "too_large", "2**40 instances"),
    ("h14_brep_location_chain_2pow40.brep", lambda: brep_location_chain(40), LIM, "too_large", "2**40 locations"),
    ("h14_iges_box_9e307.igs", iges_box_far_away, SAN, "non_finite", "coordinates 9.9e307"),
    ("h14_las_vlr_count_max.las", lambda: las_vlr_count(0xFFFFFFFF), LIM, "too_large", "2**32-1 VLRs declared"),
    ("h14_step_coordinate_1E400.step", lambda: step_with_coordinate("1.E400"), SAN, "non_finite", "x = 1.E400"),
    ("h14_ply_ascii_list_count_2pow32.ply", lambda: ply_ascii_list_count(4294967295), REJ, "parse_error",
     "face list count 4294967295"),
    ("h14_ply_face_element_without_properties.ply", ply_face_without_properties, REJ, "parse_error",
     "element face 4 with no property (trimesh: TypeError or UnboundLocalError)"),
    ("h14_ply_property_type_mloat.ply", ply_unknown_type, REJ, "parse_error", "property Mloat x (KeyError)"),
    ("h14_pcd_type_q.pcd", pcd_unknown_type, REJ, "parse_error", "TYPE Q (KeyError)"),
    ("h14_off_face_1e9_corners.off", lambda: off_face_corners(10**9), REJ, "parse_error", "face of 10^9 corners"),
    ("h14_glb_buffer_longer_than_bin_chunk.glb", lambda: glb(_buffer_longer_than_its_data()), REJ, "parse_error",
     "buffer byteLength 1000 over a 72-byte BIN chunk"),
    ("h14_gltf_buffer_longer_than_data_uri.gltf", lambda: json.dumps(_buffer_longer_than_its_data()), REJ,
     "parse_error", "buffer byteLength 1000 over a 72-byte data URI"),
    ("h14_glb_bin_chunk_length_lies.glb", lambda: glb(_gltf_doc(), bin_len_delta=4000), REJ, "parse_error",
     "BIN chunk length past the end"),
    ("h14_gltf_component_type_5130.gltf", lambda: json.dumps(_gltf_doc(component_type=5130)), REJ, "parse_error",
     "componentType 5130 (double)"),
    ("h14_stl_ascii_named.step", stl_ascii, ACC, "", "ASCII STL with a .step name"),
    ("h14_stl_binary_named.step", stl_binary, ACC, "", "binary STL with a .step name"),
    ("h14_pcd_upper_case_fields.pcd", pcd_upper_case, ACC, "", "FIELDS X Y Z"),
]
# fmt: on


def write_all(out: Path) -> list[dict]:
    """Write every case into ``out``; manifest entries as in ../shared/badinputs (plus ``reason``)."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, make, expect, reason, what in CASES:
        data = make()
        (out / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        entries.append({"file": name, "format": name.rsplit(".", 1)[-1], "expect": expect, "reason": reason,
                        "what": what, "bytes": (out / name).stat().st_size})  # fmt: skip
    return entries


if __name__ == "__main__":
    target = Path(sys.argv[1])
    manifest = write_all(target)
    (target / "hostile_manifest.json").write_text(json.dumps({"files": manifest}, indent=1))
