"""Checks that run before a library parses a file: does it look like its format, and do its
declared sizes fit the file and the caps of spec 13.2?

The libraries do not do this for us (see ../shared/badinputs/README.md): trimesh returns an
empty scene for a PNG named ``.stl``, Open3D believes any header, a binary STL that claims
2^31 faces is read as empty. Verdicts here use the project's own reason codes:
``parse_error`` (not this format / the header lies about the bytes present) and ``too_large``
(declared or expanded size over a cap).
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path

from ..untrusted import hardened_xml_parser, xml_error
from . import expansion
from .bodies import check_off_rows, check_ply_ascii_rows, check_reals
from .limits import MAX_FACES, MAX_VERTICES
from .limits import refuse as _fail
from .pointcloud import MAX_POINTS

MAX_ZIP_BYTES = 1024 * 1024 * 1024  # a 3MF package may inflate to at most this
MAX_ZIP_RATIO = 200  # and never more than this many times its compressed size (zip bombs)
MAX_ZIP_MEMBERS = 5000
MAX_VLRS = 65_535  # LAS variable-length records; real files hold a handful (1.4 counts EVLRs apart)
MAX_XML_ENTITY = 1024  # an internal XML entity longer than this (or referring to others) is an expansion bomb
HEAD = 65536


def precheck(path: Path, fmt: str) -> None:
    """Raise ``FormatError`` when ``path`` cannot be a sound ``fmt`` file."""
    check = _CHECKS.get(fmt)
    if check is not None:
        with path.open("rb") as fh:
            head = fh.read(HEAD)
        check(path, head, path.stat().st_size)


# ---------------------------------------------------------------- signatures of text formats


def _is_text(head: bytes) -> bool:
    return b"\x00" not in head[:4096]


def _check_text(path: Path, head: bytes, size: int) -> None:
    if not _is_text(head):
        raise _fail(path.name, "binary data in a text format")


def _check_step(path: Path, head: bytes, size: int) -> None:
    if not head.lstrip().startswith(b"ISO-10303-21"):
        raise _fail(path.name, "not a STEP file (no ISO-10303-21 header)")
    check_reals(path, "STEP")


def _check_fbx(path: Path, head: bytes, size: int) -> None:
    if head.startswith(b"Kaydara FBX Binary"):
        return
    if not _is_text(head) or not (re.match(rb"\s*;\s*FBX", head) or b"FBXHeaderExtension" in head):
        raise _fail(path.name, "not an FBX file (neither the binary magic nor an ASCII FBX header)")


def _check_las(path: Path, head: bytes, size: int) -> None:
    if not head.startswith(b"LASF"):
        raise _fail(path.name, "not a LAS/LAZ file (no LASF signature)")
    if len(head) < 227:
        return  # laspy names a short header itself
    header_size, point_offset, vlrs = struct.unpack("<HII", head[94:104])
    _check_records(path.name, "VLRs", vlrs, 54, max(min(point_offset, size) - header_size, 0))
    if head[25] >= 4 and header_size >= 375 and len(head) >= 247:  # LAS 1.4: extended VLRs after the points
        first, evlrs = struct.unpack("<QI", head[235:247])
        if evlrs:
            _check_records(path.name, "EVLRs", evlrs, 60, max(size - first, 0))


def _check_records(name: str, what: str, count: int, least: int, room: int) -> None:
    """``count`` records of at least ``least`` bytes each must fit in ``room`` bytes (laspy reads them in a loop)."""
    if count > MAX_VLRS:
        raise _fail(name, f"LAS header declares {count} {what} (cap {MAX_VLRS})", "too_large")
    if count * least > room:
        raise _fail(name, f"LAS header declares {count} {what} of at least {least} bytes; {room} bytes hold them")


def _check_iges(path: Path, head: bytes, size: int) -> None:
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if len(first) < 73 or first[72:73] not in (b"S", b"G"):
        raise _fail(path.name, "not an IGES file (no start section in column 73)")
    check_reals(path, "IGES")


def _check_brep(path: Path, head: bytes, size: int) -> None:
    if not head.lstrip().startswith((b"DBRep_DrawableShape", b"CASCADE Topology V")):
        raise _fail(path.name, "not an OpenCASCADE BREP file")
    with path.open("rb") as fh:
        expansion.check_brep_locations(fh, path.name)
    check_reals(path, "BREP")


# ---------------------------------------------------------------- mesh formats


def _check_stl(path: Path, head: bytes, size: int) -> None:
    if size >= 84:
        count = struct.unpack("<I", head[80:84])[0]
        if 84 + 50 * count == size:
            return
    text = head.lstrip()
    if text[:5].lower() == b"solid" and _is_text(head):
        with path.open("rb") as fh:
            fh.seek(max(0, size - 1024))
            tail = fh.read().lower()
        if b"endsolid" not in tail:
            raise _fail(path.name, "ASCII STL ends without 'endsolid' (truncated)")
        return
    if size < 84:
        raise _fail(path.name, f"{size} bytes: too short for a binary STL and not ASCII STL")
    if (size - 84) % 50:
        raise _fail(path.name, "neither ASCII STL nor whole 50-byte binary STL records")
    if count > MAX_FACES:
        raise _fail(path.name, f"binary STL header claims {count} faces", "too_large")
    if 84 + 50 * count > size:
        raise _fail(path.name, f"binary STL header claims {count} faces, the file holds {(size - 84) // 50}")
    if not _plausible_binary_stl(head, count):
        raise _fail(path.name, "not an STL file")


def _plausible_binary_stl(head: bytes, count: int) -> bool:
    """Extra bytes after the faces are tolerated when the first facets look like float data."""
    return count > 0 and not head.lstrip().startswith((b"<", b"\x89PNG", b"{"))


_PLY_SIZES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip


def _check_ply(path: Path, head: bytes, size: int) -> None:
    if not re.match(rb"ply\r?\n", head):
        raise _fail(path.name, "not a PLY file (no 'ply' magic)")
    end = head.find(b"end_header")
    if end < 0:
        raise _fail(path.name, "PLY header without end_header")
    lines = head[:end].decode("ascii", "replace").splitlines()
    elements, encoding = _ply_elements(lines, path.name)
    cloud = not any(name in ("face", "tristrips") and count for name, count, _, _ in elements)
    for name, count, _, _ in elements:
        cap = MAX_FACES if name == "face" else MAX_POINTS if cloud else MAX_VERTICES  # clouds stream
        if count > cap:
            raise _fail(path.name, f"PLY declares {count} {name} elements", "too_large")
    data_start = head.find(b"\n", end) + 1
    if encoding.startswith("binary"):
        need = sum(count * record for _, count, record, _ in elements)  # list properties count their minimum
        if data_start + need > size:
            raise _fail(path.name, f"PLY binary body holds {size - data_start} of at least {need} bytes")
        return
    rows = sum(count for _, count, _, _ in elements)
    if 2 * rows > size - data_start:  # an ASCII row is at least one digit and a line break
        raise _fail(path.name, f"PLY declares {rows} rows; {size - data_start} bytes cannot hold them")
    if any(is_list for _, _, _, props in elements for _, is_list in props):
        check_ply_ascii_rows(path, [(n, c, props) for n, c, _, props in elements], data_start)


def _ply_elements(lines: list[str], name: str) -> tuple[list[tuple[str, int, int, list[tuple[str, bool]]]], str]:
    """(element, count, minimum record bytes, [(property, is list)]) for each element, and the encoding.

    Keywords and type names are read case-insensitively; element names are lower-cased too.
    """
    elements: list[list] = []
    encoding = "ascii"
    for line in lines:
        parts = line.lower().split()
        if not parts:
            continue
        try:
            if parts[0] == "format":
                encoding = parts[1]
            elif parts[0] == "element":
                count = int(parts[2])
                if count < 0:
                    raise _fail(name, "negative PLY element count")
                elements.append([parts[1], count, 0, []])
            elif parts[0] == "property":
                types = parts[2:4] if parts[1] == "list" else parts[1:2]
                if not elements or len(parts) != len(types) + 2 + (parts[1] == "list"):
                    raise ValueError("a property outside an element, or without a type and a name")
                unknown = [t for t in types if t not in _PLY_SIZES]
                if unknown:
                    raise _fail(name, f"PLY property {parts[-1]!r} has type {unknown[0]!r}; PLY types are "
                                f"{' '.join(_PLY_SIZES)}")  # fmt: skip
                # a list property takes at least its count field (an empty list)
                elements[-1][2] += _PLY_SIZES[types[0]]
                elements[-1][3].append((line.split()[-1], parts[1] == "list"))
        except (IndexError, ValueError) as exc:
            raise _fail(name, f"bad PLY header line {line!r}") from exc
    for element, count, _, props in elements:
        if count and not props:  # trimesh fails on it with an UnboundLocalError
            raise _fail(name, f"PLY element {element!r} declares {count} rows but no properties")
    return [(e, c, r, p) for e, c, r, p in elements], encoding


def _check_off(path: Path, head: bytes, size: int) -> None:
    _check_text(path, head, size)
    tokens = [ln.split(b"#", 1)[0].strip() for ln in head.splitlines()]
    tokens = [t for t in tokens if t]
    match = re.match(rb"^[A-Z]*OFF(.*)$", tokens[0]) if tokens else None
    if match is None:
        raise _fail(path.name, "not an OFF file (no OFF header)")
    inline = match.group(1).split()  # counts may follow the keyword on its line, even glued to it
    rest = inline or (tokens[1].split() if len(tokens) > 1 else [])
    try:
        nv, nf = int(rest[0]), int(rest[1])
    except (IndexError, ValueError) as exc:
        raise _fail(path.name, "OFF header without vertex/face counts") from exc
    if nv < 0 or nf < 0:
        raise _fail(path.name, "negative OFF element counts")
    if nv > MAX_VERTICES or nf > MAX_FACES:
        raise _fail(path.name, f"OFF declares {nv} vertices and {nf} faces", "too_large")
    if 4 * nv + 2 * nf > size:  # a vertex row is at least "0 0 0" plus a line break, a face row "0" plus one
        raise _fail(path.name, f"OFF declares {nv} vertices and {nf} faces; {size} bytes cannot hold them")
    check_off_rows(path, nv, nf, 1 if inline else 2)


def _check_obj(path: Path, head: bytes, size: int) -> None:
    _check_text(path, head, size)
    if size > HEAD and b"\n" not in head:
        raise _fail(path.name, f"no line break in the first {HEAD} bytes; not an OBJ file")


# ---------------------------------------------------------------- glTF / GLB (see gltfcheck)


def _check_glb(path: Path, head: bytes, size: int) -> None:
    from .gltfcheck import check_glb

    check_glb(path, head, size)


def _check_gltf(path: Path, head: bytes, size: int) -> None:
    from .gltfcheck import check_gltf

    check_gltf(path, head, size)


# ---------------------------------------------------------------- XML: DAE and 3MF model parts


def check_xml(data: bytes | Path, name: str):
    """Refuse DTD tricks before a library parses the XML.

    External entities / DTDs -> ``reference_outside_item``; entity expansion bombs and
    over-deep nesting -> ``too_large``; ``count`` attributes over the caps -> ``too_large``.
    Returns the parsed lxml tree, for the checks that count what it expands to.
    """
    from lxml import etree

    try:
        if isinstance(data, Path):
            tree = etree.parse(str(data), hardened_xml_parser())
        else:
            tree = etree.ElementTree(etree.fromstring(data, hardened_xml_parser()))
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc, name) from exc
    _check_dtd(tree, name)
    for el in tree.xpath("//*[@count]"):  # selected in C: a 100K-element model part costs milliseconds
        count = el.get("count")
        if count is not None and count.strip().isdigit() and int(count) > MAX_FACES * 3:
            raise _fail(name, f"XML element declares count={count}", "too_large")
    return tree


def _check_dtd(tree, name: str) -> None:
    info = tree.docinfo
    if info.system_url or info.public_id:
        raise _fail(name, f"XML refers to an external DTD {info.system_url or info.public_id!r}",
                    "reference_outside_item")  # fmt: skip
    dtd = info.internalDTD
    if dtd is None:
        return
    for entity in dtd.iterentities():
        if entity.system_url:
            raise _fail(name, f"XML entity {entity.name!r} refers to {entity.system_url!r}",
                        "reference_outside_item")  # fmt: skip
        content = entity.content or ""
        if "&" in content or "%" in content or len(content) > MAX_XML_ENTITY:
            raise _fail(name, f"XML entity {entity.name!r} expands recursively or hugely", "too_large")


def _check_dae(path: Path, head: bytes, size: int) -> None:
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise _fail(path.name, "not a COLLADA (XML) file")
    expansion.check_dae_scene(check_xml(path, path.name), path.name)


def _check_3mf(path: Path, head: bytes, size: int) -> None:
    if not head.startswith(b"PK"):
        raise _fail(path.name, "not a 3MF package (not a zip file)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_zip_members(infos, path.name, size)
            models = [i for i in infos if i.filename.lower().endswith(".model")]
            if not models:
                raise _fail(path.name, "3MF package without a 3D model part")
            for info in models:
                part = f"{path.name}!{info.filename}"
                expansion.check_3mf_model(check_xml(zf.read(info), part), part)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error,
            UnicodeDecodeError) as exc:  # fmt: skip
        raise _fail(path.name, f"unreadable 3MF package ({type(exc).__name__}: {exc})") from exc


def _check_zip_members(infos: list[zipfile.ZipInfo], name: str, size: int) -> None:
    if len(infos) > MAX_ZIP_MEMBERS:
        raise _fail(name, f"{len(infos)} package members", "too_large")
    total = 0
    for info in infos:
        member = info.filename.replace("\\", "/")
        if member.startswith("/") or ".." in member.split("/") or re.match(r"^[A-Za-z]:", member):
            raise _fail(name, f"package member {info.filename!r} points outside the package", "reference_outside_item")
        total += info.file_size
    if total > MAX_ZIP_BYTES or total > MAX_ZIP_RATIO * max(size, 1) + 1024 * 1024:
        raise _fail(name, f"package inflates to {total} bytes from {size}", "too_large")


_CHECKS = {
    "STEP": _check_step, "IGES": _check_iges, "BREP": _check_brep, "STL": _check_stl, "PLY": _check_ply,
    "OFF": _check_off, "OBJ": _check_obj, "GLB": _check_glb, "GLTF": _check_gltf, "DAE": _check_dae,
    "3MF": _check_3mf, "XYZ": _check_text, "PTS": _check_text, "FBX": _check_fbx, "LAS": _check_las,
    "LAZ": _check_las,
}  # fmt: skip
