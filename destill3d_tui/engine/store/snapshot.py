"""The snapshot: everything Destill3D keeps of a model, and its ``.d3d`` codec.

File layout: ``b"D3D"`` + major version byte + minor version byte, then one lz4 frame holding
a msgpack map. Arrays are stored either as raw little-endian bytes (``exact``) or quantized
(``compact``, see :mod:`quantize`). Readers accept any minor version of their major version and
refuse another major with a migration hint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lz4.frame
import msgpack
import numpy as np

from ..errors import Destill3DError
from ..text import clean_name, display, encodable, is_clean
from . import quantize as q

MAGIC = b"D3D"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
PRECISIONS = ("compact", "exact")


class SnapshotFormatError(Destill3DError):
    reason = "snapshot_invalid"


class SnapshotWriteError(Destill3DError):
    """The snapshot was made but could not be written (disk full, no permission, ...)."""

    reason = "write_failed"


NAME_MAX_BYTES = 255  # the longest file name (in bytes) Linux, macOS and Windows file systems take
_NAME_BUDGET = NAME_MAX_BYTES - 16  # room for a ".N" repeat counter added by callers


def write_atomic(target: Path, data: bytes) -> None:
    """``data`` into ``target`` via a short-named temp file in the same folder and ``os.replace``.

    The temp name is short (not ``target.name + ".part"``), so a name near the limit still works.
    """
    fd, tmp = -1, ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".d3d-", suffix=".part", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            fd = -1  # the file object owns it now
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        tmp = ""
    except OSError as exc:
        raise SnapshotWriteError(
            f"cannot write {display(target.name)}: {exc.strerror or exc}", reason="write_failed"
        ) from exc
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def snapshot_file_name(name: str, suffix: str = ".d3d") -> str:
    """A safe file name for the snapshot of an input named ``name`` (``fuze.obj`` -> ``fuze.obj.d3d``).

    Names that would not survive as they are: too long once the suffix is added, not valid
    UTF-8 (surrogate-escaped bytes), or holding control/bidi characters. They are shortened and
    cleaned (unsafe characters become ``_``) and get the first 12 hex digits of the sha256 of the
    original name's bytes, so two such names never collide: ``<cleaned>-<hash>.<ext>.d3d``.
    """
    plain = f"{name}{suffix}"
    if is_clean(name) and len(os.fsencode(plain)) <= _NAME_BUDGET:
        return plain
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    stem, dot, ext = name.rpartition(".")
    if not dot or not is_clean(ext) or len(ext) > 16:
        stem, ext = name, ""
    tail = f"-{digest}{'.' + ext if ext else ''}{suffix}"
    cleaned = clean_name(stem).encode("utf-8")[: _NAME_BUDGET - len(tail.encode("utf-8"))]
    return cleaned.decode("utf-8", "ignore") + tail  # "ignore" drops a character cut in half


@dataclass
class Provenance:
    platform: str = "local"
    source_url: str = ""
    source_id: str = ""
    title: str = ""
    description: str = ""
    author: str = ""
    license: str = ""  # the platform's own licence string
    license_spdx: str = ""  # normalised SPDX id ("CC-BY-4.0"), "" when unknown
    license_flags: dict[str, bool] = field(default_factory=dict)  # commercial, derivatives, ...
    tags: list[str] = field(default_factory=list)
    original_filename: str = ""
    original_format: str = ""  # "STEP", "STL", ...
    original_file_size: int = 0
    original_file_hash: str = ""  # sha256 hex
    source_created: str = ""  # ISO 8601
    source_modified: str = ""
    acquired_at: str = ""


@dataclass
class Geometry:
    """points, normals: (n, 3) float32 on the unit sphere; curvature, density: (n,) float32."""

    points: np.ndarray
    normals: np.ndarray
    curvature: np.ndarray
    density: np.ndarray | None = None
    views: np.ndarray | None = None  # (v, h, w) uint8 depth maps
    centroid: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0  # original = points * scale + centroid

    @property
    def point_count(self) -> int:
        return int(self.points.shape[0])


@dataclass
class QualityFlags:
    empty: bool = False
    degenerate_share: float = 0.0  # share of faces dropped as degenerate
    non_manifold: bool = False
    open: bool = False  # not watertight
    component_count: int = 0
    too_simple: bool = False  # fewer faces/points than a usable shape has
    is_point_cloud: bool = False


@dataclass
class Features:
    global_features: np.ndarray  # (32,) float32, layout of spec 5.4
    bbox_min: tuple[float, float, float] = (0.0, 0.0, 0.0)  # original scale
    bbox_max: tuple[float, float, float] = (0.0, 0.0, 0.0)
    surface_area: float = 0.0
    volume: float = 0.0  # 0 if not watertight
    is_watertight: bool = False
    vertex_count: int = 0
    face_count: int = 0
    quality: QualityFlags = field(default_factory=QualityFlags)


@dataclass
class Prediction:
    label: str
    confidence: float
    taxonomy: str = "modelnet40"
    model_name: str = ""
    rank: int = 1
    uncertainty: float | None = None
    source: str = "classifier"  # classifier | synonym | few_shot | encoder


@dataclass
class ProcessingMetadata:
    destill3d_version: str = ""
    extractor_version: str = ""
    target_points: int = 2048
    sampling_strategy: str = "hybrid"
    oversample_ratio: float = 5.0
    seed: int = 0
    precision: str = "compact"
    tessellation: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)  # load, sample, normals, ...
    warnings: list[str] = field(default_factory=list)
    up_axis: str = ""  # axis the points are expressed in ("z" after conversion), "" unknown
    transforms: list[str] = field(default_factory=list)  # what was done to the geometry
    mesh_quality_score: float = 1.0


@dataclass
class Snapshot:
    geometry: Geometry
    features: Features
    provenance: Provenance = field(default_factory=Provenance)
    processing: ProcessingMetadata = field(default_factory=ProcessingMetadata)
    predictions: list[Prediction] = field(default_factory=list)
    embedding: np.ndarray | None = None  # (d,) float32
    embedding_model: str = ""
    snapshot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    model_id: str = ""  # "platform:source_id"
    version: int = FORMAT_MAJOR

    # ------------------------------------------------------------ codec

    def to_bytes(self, precision: str | None = None) -> bytes:
        precision = precision or self.processing.precision or "compact"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        payload = _utf8(_encode(self, precision))
        body = msgpack.packb(payload, use_bin_type=True)
        return MAGIC + bytes([FORMAT_MAJOR, FORMAT_MINOR]) + lz4.frame.compress(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        if len(data) < 5 or data[:3] != MAGIC:
            raise SnapshotFormatError("not a Destill3D snapshot (.d3d): bad magic bytes")
        major, minor = data[3], data[4]
        if major != FORMAT_MAJOR:
            raise SnapshotFormatError(
                f"snapshot format {major}.{minor} is not readable by this version "
                f"(reads {FORMAT_MAJOR}.x); re-extract the source or convert it with the "
                f"Destill3D release that wrote it (`snapshot show` prints the writer version)"
            )
        try:
            payload = msgpack.unpackb(lz4.frame.decompress(data[5:]), raw=False, strict_map_key=False)
            return _decode(payload)
        except Exception as exc:
            raise SnapshotFormatError(f"corrupt snapshot: {type(exc).__name__}: {exc}") from exc

    def save(self, path: str | Path, precision: str | None = None) -> int:
        """Write the ``.d3d`` atomically: a temp file beside ``path``, then one rename.

        A reader never sees half a snapshot, and a failed write (full disk, file too big, a
        folder that went away) leaves no temp file behind: it raises
        :class:`SnapshotWriteError` (reason ``write_failed``) and ``path`` is as it was.
        """
        data = self.to_bytes(precision)
        write_atomic(Path(path), data)
        return len(data)

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        return cls.from_bytes(Path(path).read_bytes())

    def top_prediction(self) -> Prediction | None:
        return min(self.predictions, key=lambda p: p.rank) if self.predictions else None


# ---------------------------------------------------------------- encoding helpers


def _array(a: np.ndarray, dtype: str) -> dict[str, Any]:
    arr = np.ascontiguousarray(a, dtype=dtype)
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.astype(arr.dtype.newbyteorder("<")).tobytes()}


def _unarray(d: dict[str, Any] | None) -> np.ndarray | None:
    if d is None:
        return None
    dtype = np.dtype(d["dtype"]).newbyteorder("<")
    return np.frombuffer(d["data"], dtype=dtype).astype(d["dtype"]).reshape(d["shape"])


def _encode_geometry(g: Geometry, precision: str) -> dict[str, Any]:
    n = g.point_count
    out: dict[str, Any] = {"n": n, "centroid": [float(c) for c in g.centroid], "scale": float(g.scale)}
    if precision == "exact":
        out["points"] = _array(g.points, "float32")
        out["normals"] = _array(g.normals, "float32")
        out["curvature"] = _array(g.curvature, "float32")
        out["density"] = None if g.density is None else _array(g.density, "float32")
    else:
        out["points_q"] = q.quantize(g.points, -1.0, 1.0, q.POINT_BITS)
        out["normals_q"] = q.encode_normals(g.normals)
        out["curvature_q"] = q.quantize(g.curvature, 0.0, q.CURVATURE_MAX, q.CURVATURE_BITS)
        out["density_q"] = None if g.density is None else q.quantize(g.density, 0.0, 1.0, q.DENSITY_BITS)
    out["views"] = None if g.views is None else _array(g.views, "uint8")
    return out


def _decode_geometry(d: dict[str, Any]) -> Geometry:
    n = d["n"]
    if "points" in d:
        points, normals, curvature = _unarray(d["points"]), _unarray(d["normals"]), _unarray(d["curvature"])
        density = _unarray(d.get("density"))
    else:
        points = q.dequantize(d["points_q"], -1.0, 1.0, q.POINT_BITS, n * 3).reshape(n, 3)
        normals = q.decode_normals(d["normals_q"], n)
        curvature = q.dequantize(d["curvature_q"], 0.0, q.CURVATURE_MAX, q.CURVATURE_BITS, n)
        dq = d.get("density_q")
        density = None if dq is None else q.dequantize(dq, 0.0, 1.0, q.DENSITY_BITS, n)
    return Geometry(
        points=points,
        normals=normals,
        curvature=curvature,
        density=density,
        views=_unarray(d.get("views")),
        centroid=tuple(d["centroid"]),
        scale=d["scale"],
    )


def _utf8(value: Any) -> Any:
    """Strings msgpack can store: a name that is not valid UTF-8 is kept in its escaped form."""
    if isinstance(value, str):
        return value if encodable(value) else display(value)
    if isinstance(value, dict):
        return {k: _utf8(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_utf8(v) for v in value]
    return value


def _plain(obj: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(obj).items()}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Drop keys a newer minor version added, so old readers ignore unknown fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _encode(s: Snapshot, precision: str) -> dict[str, Any]:
    features = _plain(dataclasses.replace(s.features, global_features=np.zeros(0)))
    features["global_features"] = _array(s.features.global_features, "float32")
    processing = _plain(s.processing)
    processing["precision"] = precision
    return {
        "snapshot_id": s.snapshot_id,
        "model_id": s.model_id,
        "version": s.version,
        "provenance": _plain(s.provenance),
        "geometry": _encode_geometry(s.geometry, precision),
        "features": features,
        "predictions": [_plain(p) for p in s.predictions],
        "embedding": None if s.embedding is None else _array(s.embedding, "float32"),
        "embedding_model": s.embedding_model,
        "processing": processing,
    }


def _decode(d: dict[str, Any]) -> Snapshot:
    f = dict(d["features"])
    quality = QualityFlags(**_known(QualityFlags, f.pop("quality", {}) or {}))
    f["global_features"] = _unarray(f["global_features"])
    for key in ("bbox_min", "bbox_max"):
        if key in f:
            f[key] = tuple(f[key])
    features = Features(**_known(Features, f), quality=quality)
    return Snapshot(
        snapshot_id=d["snapshot_id"],
        model_id=d.get("model_id", ""),
        version=d.get("version", FORMAT_MAJOR),
        provenance=Provenance(**_known(Provenance, d.get("provenance", {}))),
        geometry=_decode_geometry(d["geometry"]),
        features=features,
        predictions=[Prediction(**_known(Prediction, p)) for p in d.get("predictions", [])],
        embedding=_unarray(d.get("embedding")),
        embedding_model=d.get("embedding_model", ""),
        processing=ProcessingMetadata(**_known(ProcessingMetadata, d.get("processing", {}))),
    )
