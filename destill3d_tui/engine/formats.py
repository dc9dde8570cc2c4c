"""Which 3D format a file holds: magic bytes or a text signature, then the extension, then content sniffing.

Content decides the same way for every variant of a format: a binary STL (its size) and an
ASCII STL (``solid`` ... ``facet``) named ``.step`` are both read as STL.

Short upper-case names are used everywhere (``LoadedGeometry.format``, provenance):
STEP IGES BREP STL OBJ PLY OFF GLTF GLB 3MF DAE FBX PCD XYZ PTS LAS LAZ.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

from .errors import FormatError

FORMATS = (
    "STEP", "IGES", "BREP", "STL", "OBJ", "PLY", "OFF", "GLTF", "GLB", "3MF", "DAE", "FBX",
    "PCD", "XYZ", "PTS", "LAS", "LAZ",
)  # fmt: skip
CAD_FORMATS = frozenset({"STEP", "IGES", "BREP"})
POINT_FORMATS = frozenset({"PCD", "XYZ", "PTS", "LAS", "LAZ"})

EXTENSIONS = {
    ".step": "STEP", ".stp": "STEP", ".p21": "STEP",
    ".iges": "IGES", ".igs": "IGES",
    ".brep": "BREP", ".brp": "BREP",
    ".stl": "STL", ".obj": "OBJ", ".ply": "PLY", ".off": "OFF",
    ".gltf": "GLTF", ".glb": "GLB", ".3mf": "3MF", ".dae": "DAE", ".fbx": "FBX",
    ".pcd": "PCD", ".xyz": "XYZ", ".pts": "PTS", ".las": "LAS", ".laz": "LAZ",
}  # fmt: skip

# text formats whose first lines identify them beyond doubt; XYZ/PTS/OBJ rows are judged weakly
SIGNED_TEXT = frozenset({"IGES", "STL", "DAE", "GLTF", "FBX", "PCD", "OFF"})
HEAD_BYTES = 4096  # enough for every header we look at; never read a whole file to sniff it
_OBJ_KEYS = frozenset(b"v vt vn vp f l p o g s mtllib usemtl cstype deg curv surf parm end".split())
_GLTF_KEYS = (b'"asset"', b'"accessors"', b'"bufferViews"', b'"meshes"', b'"scenes"')
_NUMBER_ROW = re.compile(rb"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?([\s,;]+\S+){2,}\s*$")


def detect_format(path: str | Path) -> str:
    """Name the format of ``path``.

    Raises
    ------
    FormatError
        reason ``format_unsupported`` when nothing identifies a supported format.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
        size = path.stat().st_size
    except OSError as exc:
        raise FormatError(f"cannot read {path.name}: {exc.strerror or exc}", reason="parse_error") from exc
    content = _by_content(head)
    strong = content if content in SIGNED_TEXT else None  # a text signature outranks the name, as magic does
    found = _by_magic(path, head, size) or strong or EXTENSIONS.get(path.suffix.lower()) or content
    if found is None:
        raise FormatError(
            f"{path.name}: not a supported 3D format (supported: {', '.join(FORMATS)})",
            reason="format_unsupported",
        )
    return found


def stl_encoding(head: bytes, size: int) -> str:
    """``binary`` when the size matches a binary STL's face count, else ``ascii``.

    A binary STL's 80-byte header may itself start with ``solid``, so the word alone decides nothing.
    """
    if size >= 84 and 84 + 50 * struct.unpack("<I", head[80:84])[0] == size:
        return "binary"
    return "ascii" if head.lstrip().lower().startswith(b"solid") else "binary"


def _by_magic(path: Path, head: bytes, size: int) -> str | None:
    if head.startswith(b"glTF"):
        return "GLB"
    if head.startswith(b"ISO-10303-21"):
        return "STEP"
    if head.startswith(b"Kaydara FBX Binary"):
        return "FBX"
    if head.startswith(b"LASF"):
        return _las_or_laz(path, head)
    if re.match(rb"ply\r?\n", head):
        return "PLY"
    if head.startswith(b"PK\x03\x04") and _is_3mf(path):
        return "3MF"
    if head.startswith((b"DBRep_DrawableShape", b"CASCADE Topology V")):
        return "BREP"
    if size >= 84 and 84 + 50 * struct.unpack("<I", head[80:84])[0] == size and len(head) >= 84:
        return "STL"  # exact binary STL size: a stronger sign than any extension
    return None


def _las_or_laz(path: Path, head: bytes) -> str:
    """LAS 1.x: bit 7 (or 6) of the point format byte marks LASzip compression."""
    if len(head) > 104 and head[104] & 0xC0:
        return "LAZ"
    return "LAZ" if path.suffix.lower() == ".laz" else "LAS"


def _is_3mf(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n.lower() for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith(".model") for n in names) or "[content_types].xml" in names


def _by_content(head: bytes) -> str | None:
    """Text formats without a fixed signature, judged from their first lines."""
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if len(first) >= 73 and first[72:73] == b"S" and first[73:80].strip().isdigit():
        return "IGES"  # fixed 80-column records, start section flagged in column 73
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = text[:512].lower()
    if low.startswith(b"solid") and b"facet" in low:
        return "STL"
    if low.startswith(b"<?xml") or low.startswith(b"<"):
        if b"<collada" in low or b"<collada" in head.lower():
            return "DAE"
        return None
    if low.startswith(b"{") and any(key in head for key in _GLTF_KEYS):
        return "GLTF"
    if low.startswith(b"; fbx") or b"fbxheaderextension" in low:
        return "FBX"
    lines = [ln.strip() for ln in text.splitlines()[:40] if ln.strip()]
    return _by_lines(lines)


def _by_lines(lines: list[bytes]) -> str | None:
    if not lines:
        return None
    first = lines[0]
    upper = [ln.upper() for ln in lines[:12]]  # PCD keywords are case-insensitive
    has_pcd_header = any(ln.startswith(b"VERSION") for ln in upper[:3]) and any(
        ln.startswith(b"FIELDS") for ln in upper
    )
    if upper[0].startswith(b"# .PCD") or has_pcd_header:
        return "PCD"
    if re.match(rb"^[A-Z]*OFF\b", first) or first.startswith(b"OFF"):
        return "OFF"
    content = [ln for ln in lines if not ln.startswith(b"#")]
    if any(ln.startswith(b"v ") for ln in content) and all(ln.split(None, 1)[0] in _OBJ_KEYS for ln in content[:10]):
        return "OBJ"
    if content and content[0].isdigit() and len(content) > 1 and _NUMBER_ROW.match(content[1]):
        return "PTS"
    if content and all(_NUMBER_ROW.match(ln) for ln in content[:10]):
        return "XYZ"
    return None
