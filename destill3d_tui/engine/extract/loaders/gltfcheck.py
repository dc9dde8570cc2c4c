"""glTF / GLB checks before trimesh reads them: chunks and buffers that hold what their lengths
say, accessors of the kinds glTF defines and inside their views, a node graph without cycles,
and what the scenes expand to (:mod:`.expansion`).

trimesh answers a lying length with ``AssertionError:`` and an undefined componentType with
``KeyError: 5130``; these checks name the chunk, buffer or accessor instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from pathlib import Path
from urllib.parse import unquote

from ..untrusted import json_problem
from . import expansion
from .limits import MAX_FACES, MAX_VERTICES
from .limits import refuse as _fail


def check_glb(path: Path, head: bytes, size: int) -> None:
    if len(head) < 20 or not head.startswith(b"glTF"):
        raise _fail(path.name, "not a GLB file (no glTF magic)")
    _, _version, total, json_len, json_type = struct.unpack("<4sIIII", head[:20])
    if total != size:  # the header's length is the whole file's (glTF 2.0, 4.4.2)
        raise _fail(path.name, f"GLB header says {total} bytes, the file has {size}")
    if json_type != 0x4E4F534A:
        raise _fail(path.name, f"GLB's first chunk is of type {json_type:#x}, not JSON")
    chunks = _glb_chunks(path, size)
    with path.open("rb") as fh:
        fh.seek(20)
        doc = _json(fh.read(json_len), path.name)
    bin_len = next((length for kind, length in chunks[1:] if kind == 0x004E4942), None)
    check_gltf_document(doc, path.name, bin_len, path.parent)


def _glb_chunks(path: Path, size: int) -> list[tuple[int, int]]:
    """(type, length) of every chunk; each must lie wholly inside the file."""
    chunks: list[tuple[int, int]] = []
    with path.open("rb") as fh:
        at = 12
        while at < size:
            fh.seek(at)
            header = fh.read(8)
            if len(header) < 8:
                raise _fail(path.name, f"GLB chunk {len(chunks)} header cut off at byte {at} of {size}")
            length, kind = struct.unpack("<II", header)
            if at + 8 + length > size:
                raise _fail(path.name, f"GLB chunk {len(chunks)} (type {kind:#x}) says {length} bytes, "
                            f"{size - at - 8} remain in the file")  # fmt: skip
            chunks.append((kind, length))
            at += 8 + length
    return chunks


def check_gltf(path: Path, head: bytes, size: int) -> None:
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        raise _fail(path.name, "not a glTF file (no JSON object)")
    check_gltf_document(_json(path.read_bytes(), path.name), path.name, None, path.parent)


def _json(data: bytes, name: str) -> dict:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _fail(name, f"invalid glTF JSON: {json_problem(exc)}") from exc
    if not isinstance(doc, dict):
        raise _fail(name, "glTF JSON is not an object")
    return doc


_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_COMPONENT_BYTES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}


def check_gltf_document(doc: dict, name: str, glb_bin_len: int | None, folder: Path | None = None) -> None:
    """Buffers that hold their byteLength; accessor counts under the caps and inside their buffer
    views; a node graph without cycles; scenes under the expansion caps."""
    try:
        views = doc.get("bufferViews") or []
        buffers = doc.get("buffers") or []
        for index, buffer in enumerate(buffers):
            _check_buffer(buffer, index, name, glb_bin_len, folder)
        for index, view in enumerate(views):
            stride = view.get("byteStride")
            if stride is not None and not 4 <= int(stride) <= 252:
                raise _fail(name, f"glTF bufferView {index} has byteStride {stride}; glTF allows 4 to 252")
        for index, acc in enumerate(doc.get("accessors") or []):
            _check_accessor_kind(acc, index, name)
            _check_accessor(acc, views, buffers, name)
        _check_node_cycles(doc.get("nodes") or [], name)
        expansion.check_gltf_scene(doc, name)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise _fail(name, f"malformed glTF structure ({type(exc).__name__}: {exc})") from exc


def _check_buffer(buffer: dict, index: int, name: str, glb_bin_len: int | None, folder: Path | None) -> None:
    """The bytes a buffer really has (BIN chunk, data URI or file beside the model) must cover its byteLength."""
    declared = int(buffer.get("byteLength", 0))
    uri = buffer.get("uri")
    if uri is None:
        held, where = glb_bin_len, "the GLB BIN chunk"
    elif uri.startswith("data:"):
        held, where = _data_uri_bytes(uri, index, name), "its data URI"
    else:
        target = folder / unquote(uri) if folder is not None else None
        held, where = (target.stat().st_size, repr(uri)) if target is not None and target.is_file() else (None, "")
    if held is not None and held < declared:
        raise _fail(name, f"glTF buffer {index} says byteLength {declared}; {where} holds {held} bytes")


def _data_uri_bytes(uri: str, index: int, name: str) -> int:
    head, _, payload = uri.partition(",")
    if not head.endswith(";base64"):
        return len(payload)
    try:
        return len(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise _fail(name, f"glTF buffer {index}: its data URI is not valid base64 ({exc})") from exc


def _check_accessor_kind(acc: dict, index: int, name: str) -> None:
    """componentType and type must be ones glTF 2.0 defines (5130, a double, is not)."""
    kind = acc.get("componentType")
    if kind not in _COMPONENT_BYTES:
        raise _fail(name, f"glTF accessor {index} has componentType {kind!r}; glTF defines "
                    f"{', '.join(map(str, _COMPONENT_BYTES))}")  # fmt: skip
    if acc.get("type") not in _COMPONENTS:
        raise _fail(name, f"glTF accessor {index} has type {acc.get('type')!r}; glTF defines {', '.join(_COMPONENTS)}")


def _check_accessor(acc: dict, views: list, buffers: list, name: str) -> None:
    count = int(acc.get("count", 0))
    if count < 0:
        raise _fail(name, "negative accessor count")
    if count > max(MAX_VERTICES, MAX_FACES * 3):
        raise _fail(name, f"glTF accessor count {count}", "too_large")
    if "bufferView" not in acc:
        return
    view = views[int(acc["bufferView"])]
    element = _COMPONENTS.get(acc.get("type"), 1) * _COMPONENT_BYTES.get(acc.get("componentType"), 4)
    stride = int(view.get("byteStride") or element)
    need = int(acc.get("byteOffset", 0)) + (stride * (count - 1) + element if count else 0)
    if need > int(view.get("byteLength", 0)):
        raise _fail(name, f"glTF accessor needs {need} bytes, its buffer view holds {view.get('byteLength')}")
    buffer = buffers[int(view.get("buffer", 0))]
    if int(view.get("byteOffset", 0)) + int(view.get("byteLength", 0)) > int(buffer.get("byteLength", 0)):
        raise _fail(name, "glTF buffer view runs past its buffer")


def _check_node_cycles(nodes: list, name: str) -> None:
    """Iterative DFS: a node reachable from itself would make scene traversal loop forever."""
    children = [[int(c) for c in (n.get("children") or [])] for n in nodes]
    state = [0] * len(nodes)  # 0 new, 1 on the stack, 2 done
    for root in range(len(nodes)):
        if state[root]:
            continue
        stack = [(root, iter(children[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            child = next(it, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif not 0 <= child < len(nodes):
                raise _fail(name, f"glTF node {node} has a child index {child} out of range")
            elif state[child] == 1:
                raise _fail(name, f"glTF node hierarchy has a cycle through node {child}")
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(children[child])))
