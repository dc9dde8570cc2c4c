"""CAD formats through OpenCASCADE (OCP): STEP (XCAF, every solid of an assembly), IGES, BREP.

The B-rep is tessellated with ``BRepMesh_IncrementalMesh``; with ``relative`` deflection the
linear deflection is that fraction of the bounding-box diagonal, so a 5 mm screw and a 50 m hall
get the same number of facets per curve.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import FormatError, GeometryError, TessellationError
from ..types import LoadedGeometry, TessellationOptions
from .limits import MAX_COORDINATE


def quiet_occt() -> None:
    """OpenCASCADE prints progress to stdout, which would corrupt ``--json`` output."""
    from OCP.Message import Message

    messenger = Message.DefaultMessenger_s()
    printers = messenger.Printers()
    while printers.Size():
        messenger.RemovePrinter(printers.First())
        printers = messenger.Printers()


def load_cad(path: Path, fmt: str, tess: TessellationOptions) -> LoadedGeometry:
    """Read and tessellate a CAD file.

    Returns
    -------
    LoadedGeometry
        vertices (n, 3) float64 in the file's units, faces (m, 3) int64, solid_count,
        ``tessellation`` = the deflections actually used.
    """
    quiet_occt()
    reader = {"STEP": _read_step, "IGES": _read_iges, "BREP": _read_brep}[fmt]
    shape, metadata = reader(path)
    if shape is None or shape.IsNull():
        raise FormatError(f"{path.name}: OpenCASCADE read no shape", format=fmt, reason="parse_error")
    check_vertex_range(shape, path.name)
    counts = _topology_counts(shape)
    metadata.update(counts)
    if counts["faces"] == 0:
        kind = "edges/curves only" if counts["edges"] else "no faces or edges"
        raise GeometryError(f"{path.name}: the {fmt} file holds no surface ({kind})", reason="empty_geometry")
    used = _tessellate(shape, tess)
    vertices, faces, skipped = _triangles_bulk(shape)
    warnings = [f"{skipped} faces could not be tessellated"] if skipped else []
    if len(faces) == 0:
        raise TessellationError(f"{path.name}: tessellation produced no triangles")
    return LoadedGeometry(
        vertices=vertices,
        faces=faces,
        format=fmt,
        units=metadata.pop("units", None),
        mesh_count=max(counts["solids"], 1),
        solid_count=counts["solids"],
        warnings=warnings,
        tessellation=used,
        metadata=metadata,
    )


# ---------------------------------------------------------------- readers


def _read_step(path: Path):
    """STEP through XCAF, so assemblies keep every instance with its location."""
    from OCP.BRep import BRep_Builder
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.OCP.collections import Sequence_TDF_Label
    from OCP.STEPCAFControl import STEPCAFControl_Reader
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDocStd import TDocStd_Document
    from OCP.TopoDS import TopoDS_Compound
    from OCP.XCAFDoc import XCAFDoc_DocumentTool, XCAFDoc_ShapeTool

    doc = TDocStd_Document(TCollection_ExtendedString("XmlXCAF"))
    reader = STEPCAFControl_Reader()
    reader.SetColorMode(False)
    reader.SetNameMode(False)
    reader.SetLayerMode(False)
    # neither changes the shapes: validation properties, PMI, materials, saved views, per-instance styles
    # (~15% of an assembly's transfer time, as1-oc-214: 114 -> 97 ms)
    for mode in ("SetPropsMode", "SetGDTMode", "SetMatMode", "SetViewMode", "SetSHUOMode"):
        getattr(reader, mode)(False)
    status = reader.ReadFile(str(path))
    if status != IFSelect_RetDone:
        raise FormatError(f"{path.name}: not a readable STEP file (status {int(status)})", reason="parse_error")
    if not reader.Transfer(doc):
        raise FormatError(f"{path.name}: STEP transfer failed", reason="parse_error")
    tool = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    labels = Sequence_TDF_Label()
    tool.GetFreeShapes(labels)
    compound, builder = TopoDS_Compound(), BRep_Builder()
    builder.MakeCompound(compound)
    for i in range(1, labels.Length() + 1):
        shape = XCAFDoc_ShapeTool.GetShape_s(labels.Value(i))
        if not shape.IsNull():
            builder.Add(compound, shape)
    # OCCT converts STEP lengths to its session unit, millimetres
    metadata = {"xcaf_free_shapes": labels.Length(), "units": "mm"}
    return compound, metadata


def _read_iges(path: Path):
    from OCP.IFSelect import IFSelect_RetDone
    from OCP.IGESControl import IGESControl_Reader

    reader = IGESControl_Reader()
    if reader.ReadFile(str(path)) != IFSelect_RetDone:
        raise FormatError(f"{path.name}: not a readable IGES file", reason="parse_error")
    roots = reader.TransferRoots()
    return reader.OneShape(), {"iges_roots": int(roots), "units": "mm"}


def _read_brep(path: Path):
    from OCP.BRep import BRep_Builder
    from OCP.BRepTools import BRepTools
    from OCP.TopoDS import TopoDS_Shape

    shape = TopoDS_Shape()
    if not BRepTools.Read_s(shape, str(path), BRep_Builder()):
        raise FormatError(f"{path.name}: not a readable BREP file", reason="parse_error")
    return shape, {}


# ---------------------------------------------------------------- topology and meshing


def _topology_counts(shape) -> dict[str, int]:
    from OCP.OCP.collections import IndexedMap_TopoDS_Shape_TopTools_ShapeMapHasher as ShapeMap
    from OCP.TopAbs import TopAbs_EDGE, TopAbs_FACE, TopAbs_SHELL, TopAbs_SOLID
    from OCP.TopExp import TopExp

    counts = {}
    kinds = (("solids", TopAbs_SOLID), ("shells", TopAbs_SHELL), ("faces", TopAbs_FACE), ("edges", TopAbs_EDGE))
    for name, kind in kinds:
        shapes = ShapeMap()
        TopExp.MapShapes_s(shape, kind, shapes)
        counts[name] = shapes.Extent()
    return counts


def check_vertex_range(shape, name: str) -> None:
    """``non_finite`` for a vertex beyond the range the features can hold, before meshing spends time on it."""
    from OCP.BRep import BRep_Tool
    from OCP.OCP.collections import IndexedMap_TopoDS_Shape_TopTools_ShapeMapHasher as ShapeMap
    from OCP.TopAbs import TopAbs_VERTEX
    from OCP.TopExp import TopExp
    from OCP.TopoDS import TopoDS

    vertices = ShapeMap()
    TopExp.MapShapes_s(shape, TopAbs_VERTEX, vertices)
    for i in range(1, vertices.Extent() + 1):
        point = BRep_Tool.Pnt_s(TopoDS.Vertex(vertices.FindKey(i)))
        largest = max(abs(point.X()), abs(point.Y()), abs(point.Z()))
        if not largest <= MAX_COORDINATE:  # also true for NaN
            where = ", ".join(f"{v:g}" for v in _xyz(point))
            raise GeometryError(f"{name}: a vertex lies at ({where}), beyond {MAX_COORDINATE:g}", reason="non_finite")


def bbox_diagonal(shape) -> float:
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib

    box = Bnd_Box()
    BRepBndLib.Add_s(shape, box, False)
    if box.IsVoid():
        return 0.0
    return math.dist(_xyz(box.CornerMin()), _xyz(box.CornerMax()))


def deflections(shape, tess: TessellationOptions) -> dict[str, float | bool | str]:
    """The absolute linear and angular deflection for ``shape`` under ``tess``."""
    linear = tess.linear_deflection
    if tess.relative:
        diagonal = bbox_diagonal(shape)
        linear = tess.relative_linear * diagonal if diagonal > 0 else tess.linear_deflection
    return {"preset": tess.preset, "relative": tess.relative, "linear_deflection": float(linear),
            "angular_deflection": float(tess.angular_deflection)}  # fmt: skip


def _tessellate(shape, tess: TessellationOptions) -> dict[str, float | bool | str]:
    from OCP.BRepMesh import BRepMesh_IncrementalMesh

    used = deflections(shape, tess)
    # the constructor meshes the shape (calling Perform() again would mesh it twice); one thread per child
    mesher = BRepMesh_IncrementalMesh(shape, used["linear_deflection"], False, used["angular_deflection"], False)
    if not mesher.IsDone():
        raise TessellationError("BRepMesh_IncrementalMesh did not finish")
    return used


FLOAT32_SAFE_RATIO = 1e3  # |coordinate| / extent above which float32 STL coordinates lose detail


def _triangles_bulk(shape) -> tuple[np.ndarray, np.ndarray, int]:
    """Every face's triangulation in world coordinates, written by OCCT's own STL writer.

    ``StlAPI_Writer`` applies locations and reversed orientations in C++ and a binary STL is
    read back with one numpy call: ~1 ms where walking the nodes from Python (:func:`_triangles`)
    takes ~15 ms on a 5K-triangle part. STL stores float32, exact enough unless the part sits
    far from the origin compared with its size; then, or if the writer fails, the exact walk
    runs instead. The temporary file lives in the process's temp dir (the item's, in workers).
    Vertices come as a soup (three per triangle): preprocessing welds them.
    """
    import tempfile

    from OCP.StlAPI import StlAPI_Writer

    with tempfile.TemporaryDirectory(prefix="d3d-stl-") as tmp:
        target = Path(tmp) / "tessellation.stl"
        writer = StlAPI_Writer()
        writer.ASCIIMode = False
        records = None
        if writer.Write(shape, str(target)) and target.stat().st_size >= 84:
            records = np.fromfile(target, dtype=_STL_RECORD, offset=84)
    if records is None or len(records) == 0:
        return _triangles(shape)
    vertices = records["corners"].reshape(-1, 3).astype(np.float64)
    extent = float(np.ptp(vertices, axis=0).max())
    if extent == 0.0 or float(np.abs(vertices).max()) > FLOAT32_SAFE_RATIO * extent:
        return _triangles(shape)
    faces = np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)
    return vertices, faces, _faces_without_mesh(shape)


_STL_RECORD = np.dtype([("normal", "<f4", 3), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def _faces_without_mesh(shape) -> int:
    from OCP.BRep import BRep_Tool
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopLoc import TopLoc_Location
    from OCP.TopoDS import TopoDS

    missing = 0
    explorer = TopExp_Explorer(shape, TopAbs_FACE)
    while explorer.More():
        mesh = BRep_Tool.Triangulation_s(TopoDS.Face(explorer.Current()), TopLoc_Location())
        missing += mesh is None or mesh.NbTriangles() == 0
        explorer.Next()
    return missing


def _triangles(shape) -> tuple[np.ndarray, np.ndarray, int]:
    """Every face's triangulation in world coordinates, reversed faces flipped.

    Nodes and triangles of all faces are gathered into two flat Python lists (one call per node
    and per triangle) and turned into arrays once; face offsets, reversed windings and locations
    are applied afterwards in numpy. Per-face arrays cost ~90 us each on the many small faces
    of CAD parts.

    Returns vertices (n, 3) float64, faces (m, 3) int64 and the count of faces without a mesh.
    """
    from OCP.BRep import BRep_Tool
    from OCP.TopAbs import TopAbs_FACE, TopAbs_REVERSED
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopLoc import TopLoc_Location
    from OCP.TopoDS import TopoDS

    coords: list[tuple[float, float, float]] = []
    corners: list[tuple[int, int, int]] = []
    node_counts: list[int] = []
    triangle_counts: list[int] = []
    reversed_faces: list[bool] = []
    locations: list[tuple | None] = []
    skipped = 0
    explorer = TopExp_Explorer(shape, TopAbs_FACE)
    while explorer.More():
        face = TopoDS.Face(explorer.Current())
        explorer.Next()
        loc = TopLoc_Location()
        mesh = BRep_Tool.Triangulation_s(face, loc)
        if mesh is None or mesh.NbTriangles() == 0:
            skipped += 1
            continue
        node, triangle = mesh.Node, mesh.Triangle  # bound once: these loops run per node
        nodes, triangles = mesh.NbNodes(), mesh.NbTriangles()
        coords.extend([node(i).Coord() for i in range(1, nodes + 1)])
        corners.extend([triangle(i).Get() for i in range(1, triangles + 1)])
        node_counts.append(nodes)
        triangle_counts.append(triangles)
        reversed_faces.append(face.Orientation() == TopAbs_REVERSED)
        locations.append(None if loc.IsIdentity() else _trsf_parts(loc.Transformation()))
    if not corners:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), skipped
    pts = np.array(coords, dtype=np.float64)
    idx = np.array(corners, dtype=np.int64) - 1
    idx += np.repeat(np.cumsum([0, *node_counts[:-1]]), triangle_counts)[:, None]
    flip = np.repeat(reversed_faces, triangle_counts)
    idx[flip] = idx[flip][:, ::-1]
    if any(parts is not None for parts in locations):
        pts = _located(pts, locations, node_counts)
    return pts, idx, skipped


def _trsf_parts(trsf) -> tuple:
    """(3x3 matrix without scale, scale, translation) of a ``gp_Trsf``, as ``gp_Trsf::Transforms`` uses them."""
    matrix = trsf.HVectorialPart()
    shift = trsf.TranslationPart()
    rows = tuple(tuple(matrix.Value(r, c) for c in (1, 2, 3)) for r in (1, 2, 3))
    return rows, trsf.ScaleFactor(), (shift.X(), shift.Y(), shift.Z())


def _located(pts: np.ndarray, locations: list[tuple | None], node_counts: list[int]) -> np.ndarray:
    """Apply each face's location to its nodes (n, 3), with the operations of ``gp_Trsf::Transforms``.

    ``(matrix . p) * scale + translation``, each row summed left to right as OCCT does, so the
    values equal ``Node(i).Transformed(trsf)``; faces without a location get the identity
    (``1*x + 0*y + 0*z``, times 1, plus 0: the same value).
    """
    identity = (((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), 1.0, (0.0, 0.0, 0.0))
    parts = [identity if p is None else p for p in locations]
    matrices = np.repeat(np.array([p[0] for p in parts]), node_counts, axis=0)  # (n, 3, 3)
    scales = np.repeat(np.array([p[1] for p in parts]), node_counts)
    shifts = np.repeat(np.array([p[2] for p in parts]), node_counts, axis=0)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    out = np.empty_like(pts)
    for row in range(3):
        value = matrices[:, row, 0] * x + matrices[:, row, 1] * y + matrices[:, row, 2] * z
        value *= scales
        out[:, row] = value + shifts[:, row]
    return out


def _xyz(p) -> tuple[float, float, float]:
    return (p.X(), p.Y(), p.Z())
