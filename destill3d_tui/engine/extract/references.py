"""Check a model's references to other files before any loader sees it.

glTF buffers and images, OBJ ``mtllib`` (and the texture maps of those MTL files), DAE images
and external ``url``s must stay inside the file's own folder. An absolute path, a ``..`` escape,
a symlink leading out, or any URL (``http:``, ``file:``, ``//host``) fails the file with reason
``reference_outside_item``: some readers follow them (Open3D's glTF reader was seen reading
``../../etc/passwd``) and the engine must never fetch anything from the network.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path, PureWindowsPath
from urllib.parse import unquote

from ..errors import FormatError
from ..formats import detect_format
from .untrusted import hardened_xml_parser, json_problem, xml_error

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")
_MTL_MAP_KEYS = (
    "map_ka", "map_kd", "map_ks", "map_ke", "map_ns", "map_d", "map_bump", "bump", "disp", "decal", "refl",
    "map_pr", "map_pm", "map_ps", "norm", "map_aniso", "map_anisor",
)  # fmt: skip
MAX_TEXT_SCAN = 64 * 1024 * 1024  # an OBJ larger than this is scanned only up to here for mtllib lines


def check_references(path: str | Path, format: str | None = None) -> list[str]:
    """Raise ``FormatError(reason="reference_outside_item")`` for any reference leaving the folder.

    Returns
    -------
    list of str
        the relative references that were found and are safe (for logs and tests).
    """
    path = Path(path)
    fmt = format or detect_format(path)
    checker = {"GLTF": _gltf_refs, "GLB": _glb_refs, "OBJ": _obj_refs, "DAE": _dae_refs}.get(fmt)
    if checker is None:
        return []
    refs: list[str] = []
    for ref in checker(path):
        if ref is not None:
            refs.append(ensure_inside(path, ref))
    return list(dict.fromkeys(refs))


def ensure_inside(model: Path, ref: str, *, encoded: bool = False) -> str:
    """Return ``ref`` when it names a file inside ``model``'s folder, else raise."""
    folder = model.resolve().parent
    target = unquote(ref) if encoded else ref
    if _is_outside(folder, target):
        raise FormatError(
            f"{model.name} refers to {ref[:200]!r}, outside its own folder; refusing to read it",
            reason="reference_outside_item",
        )
    return target


def _is_outside(folder: Path, ref: str) -> bool:
    ref = ref.strip()
    if not ref:
        return False
    if _SCHEME.match(ref) or ref.startswith(("/", "\\")) or PureWindowsPath(ref).drive:
        return True  # URL, absolute path, UNC path or drive letter
    if "\x00" in ref:
        return True
    candidate = (folder / ref.replace("\\", "/")).resolve()
    return not candidate.is_relative_to(folder)


# ---------------------------------------------------------------- glTF / GLB


def _gltf_uris(doc: object) -> list[str | None]:
    if not isinstance(doc, dict):
        raise FormatError("glTF JSON is not an object", reason="parse_error")
    uris: list[str | None] = []
    for key in ("buffers", "images"):
        items = doc.get(key) or []
        if not isinstance(items, list):
            raise FormatError(f"glTF {key!r} is not a list", reason="parse_error")
        for item in items:
            uri = item.get("uri") if isinstance(item, dict) else None
            if uri is not None and not isinstance(uri, str):
                raise FormatError(f"glTF {key} uri is not a string", reason="parse_error")
            if uri is not None and not uri.startswith("data:"):
                uris.append(uri)
    return uris


def _load_json(data: bytes, name: str) -> object:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{name}: invalid glTF JSON: {json_problem(exc)}", reason="parse_error") from exc


def _gltf_refs(path: Path) -> list[str | None]:
    return [_encoded(path, u) for u in _gltf_uris(_load_json(path.read_bytes(), path.name))]


def _encoded(path: Path, uri: str | None) -> str | None:
    """glTF URIs are percent-encoded: check both the raw and the decoded form."""
    if uri is None:
        return None
    ensure_inside(path, uri)
    return unquote(uri)


def _glb_refs(path: Path) -> list[str | None]:
    with path.open("rb") as fh:
        header = fh.read(20)
        if len(header) < 20:
            raise FormatError(f"{path.name}: truncated GLB header", reason="parse_error")
        _, _, _total, chunk_len, chunk_type = struct.unpack("<4sIIII", header)
        size = path.stat().st_size
        if chunk_type != 0x4E4F534A or chunk_len > size - 20:
            raise FormatError(f"{path.name}: GLB JSON chunk length {chunk_len} exceeds the file", reason="parse_error")
        doc = _load_json(fh.read(chunk_len), path.name)
    return [_encoded(path, u) for u in _gltf_uris(doc)]


# ---------------------------------------------------------------- OBJ / MTL


def _rest_of_line(line: str) -> str:
    parts = line.split(None, 1)
    return parts[1].strip() if len(parts) > 1 else ""


def _obj_refs(path: Path) -> list[str | None]:
    refs: list[str | None] = []
    with path.open("rb") as fh:
        data = fh.read(MAX_TEXT_SCAN)
    for raw in data.splitlines():
        if raw[:6].lower() != b"mtllib":
            continue
        value = _rest_of_line(raw.decode("utf-8", "replace"))
        # names may hold spaces or list several files: check the whole value and every token
        for ref in [value, *value.split()]:
            refs.append(ensure_inside(path, ref))
    for ref in dict.fromkeys(r for r in refs if r):
        mtl = (path.resolve().parent / ref).resolve()
        if mtl.is_file():
            refs.extend(_mtl_refs(mtl, path))
    return refs


def _mtl_refs(mtl: Path, model: Path) -> list[str | None]:
    refs: list[str | None] = []
    with mtl.open("rb") as fh:
        data = fh.read(MAX_TEXT_SCAN)
    for raw in data.splitlines():
        line = raw.decode("utf-8", "replace").strip()
        key = line.split(None, 1)[0].lower() if line else ""
        if key in _MTL_MAP_KEYS:
            value = _rest_of_line(line)
            for ref in [value, *value.split()]:
                # map options (-s 1 1 1, -bm 0.5) are numbers or flags, never paths that escape
                refs.append(ensure_inside(model, ref))
    return refs


# ---------------------------------------------------------------- DAE


def _dae_refs(path: Path) -> list[str | None]:
    from lxml import etree

    try:
        tree = etree.parse(str(path), hardened_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise xml_error(exc, path.name) from exc
    except OSError as exc:
        raise FormatError(f"{path.name}: cannot read COLLADA XML: {exc}", reason="parse_error") from exc
    refs: list[str | None] = []
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        tag = etree.QName(el).localname
        if tag in ("init_from", "ref") and el.text and el.text.strip() and len(el) == 0:
            refs.append(ensure_inside(path, el.text.strip(), encoded=True))
        for attr in ("url", "source", "href"):
            value = el.get(attr)
            if value and not value.startswith("#"):
                refs.append(ensure_inside(path, value.split("#", 1)[0], encoded=True))
    return refs
