"""The .d3d codec: compact error bounds, exact round trip, version handling."""

from __future__ import annotations

from pathlib import Path

import lz4.frame
import msgpack
import numpy as np
import pytest

from destill3d_tui.engine.store import quantize as q
from destill3d_tui.engine.store.snapshot import (
    FORMAT_MAJOR,
    MAGIC,
    Features,
    Geometry,
    Prediction,
    Provenance,
    QualityFlags,
    Snapshot,
    SnapshotFormatError,
)


def _snapshot(n: int = 2048, seed: int = 0, views: bool = False) -> Snapshot:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True).max()
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    geometry = Geometry(
        points=pts.astype(np.float32),
        normals=normals.astype(np.float32),
        curvature=(rng.random(n) / 3).astype(np.float32),
        density=rng.random(n).astype(np.float32),
        views=rng.integers(0, 255, size=(12, 224, 224), dtype=np.uint8) if views else None,
        centroid=(1.5, -2.0, 3.25),
        scale=42.0,
    )
    features = Features(
        global_features=rng.random(32).astype(np.float32),
        bbox_min=(-1.0, -2.0, -3.0),
        bbox_max=(1.0, 2.0, 3.0),
        surface_area=12.5,
        volume=3.5,
        is_watertight=True,
        vertex_count=100,
        face_count=196,
        quality=QualityFlags(degenerate_share=0.25, component_count=3, open=True),
    )
    return Snapshot(
        geometry=geometry,
        features=features,
        provenance=Provenance(title="[WIP] part", tags=["a", "b"], original_filename="x.stl"),
        predictions=[Prediction("chair", 0.9, rank=1), Prediction("table", 0.05, rank=2)],
        embedding=rng.random(64).astype(np.float32),
        model_id="local:abc",
    )


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.clip(np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1), -1, 1)
    return np.degrees(np.arccos(cos))


def test_compact_round_trip_stays_within_the_documented_bounds(tmp_path: Path) -> None:
    snap = _snapshot()
    path = tmp_path / "a.d3d"
    size = snap.save(path)
    assert size == path.stat().st_size < 25_000
    back = Snapshot.load(path)
    g, h = snap.geometry, back.geometry
    assert np.abs(h.points - g.points).max() <= 1e-3
    assert _angle_deg(h.normals, g.normals).max() <= 0.5
    assert np.abs(h.curvature - g.curvature).max() <= 2e-4
    assert np.abs(h.density - g.density).max() <= 1 / 255 / 2 + 1e-6
    np.testing.assert_array_equal(back.features.global_features, snap.features.global_features)
    assert back.features.quality == snap.features.quality
    assert back.provenance == snap.provenance and back.predictions == snap.predictions
    assert back.processing.precision == "compact"
    assert h.centroid == g.centroid and h.scale == g.scale


def test_exact_round_trip_is_bit_identical() -> None:
    snap = _snapshot(views=True)
    back = Snapshot.from_bytes(snap.to_bytes("exact"))
    for name in ("points", "normals", "curvature", "density", "views"):
        assert getattr(back.geometry, name).tobytes() == getattr(snap.geometry, name).tobytes()
        assert getattr(back.geometry, name).dtype == getattr(snap.geometry, name).dtype
    assert back.embedding.tobytes() == snap.embedding.tobytes()
    assert back.snapshot_id == snap.snapshot_id
    assert back.processing.precision == "exact"


def test_encoding_is_deterministic() -> None:
    snap = _snapshot()
    assert snap.to_bytes() == snap.to_bytes()


def test_other_major_version_is_refused_with_a_migration_hint() -> None:
    data = bytearray(_snapshot(n=64).to_bytes())
    assert bytes(data[:3]) == MAGIC
    data[3] = FORMAT_MAJOR + 1
    with pytest.raises(SnapshotFormatError) as err:
        Snapshot.from_bytes(bytes(data))
    assert err.value.reason == "snapshot_invalid"
    assert "re-extract" in str(err.value) and f"{FORMAT_MAJOR + 1}." in str(err.value)


def test_unknown_fields_from_a_newer_minor_are_ignored() -> None:
    snap = _snapshot(n=64)
    data = snap.to_bytes()
    payload = msgpack.unpackb(lz4.frame.decompress(data[5:]), raw=False)
    payload["future_top_level"] = {"x": 1}
    payload["provenance"]["future_field"] = "ignored"
    payload["features"]["quality"]["future_flag"] = True
    payload["processing"]["gpu"] = "h100"
    payload["predictions"][0]["calibrated"] = 0.5
    newer = MAGIC + bytes([FORMAT_MAJOR, data[4] + 3]) + lz4.frame.compress(msgpack.packb(payload, use_bin_type=True))
    back = Snapshot.from_bytes(newer)
    assert back.provenance == snap.provenance
    assert back.predictions == snap.predictions
    np.testing.assert_allclose(back.geometry.points, snap.geometry.points, atol=1e-3)


def test_garbage_is_refused_with_a_reason() -> None:
    with pytest.raises(SnapshotFormatError):
        Snapshot.from_bytes(b"PK\x03\x04 not a snapshot")
    with pytest.raises(SnapshotFormatError) as err:
        Snapshot.from_bytes(MAGIC + bytes([FORMAT_MAJOR, 0]) + b"\x00broken")
    assert "corrupt" in str(err.value)


def test_bit_packing_round_trips_every_width() -> None:
    rng = np.random.default_rng(3)
    for bits in (1, 7, 8, 10, 12, 16, 23):
        values = rng.integers(0, 1 << bits, size=1001).astype(np.uint32)
        np.testing.assert_array_equal(q.unpack_bits(q.pack_bits(values, bits), bits, 1001), values)


def test_octahedral_normals_cover_every_octant() -> None:
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1], [1, -1, -1]], float)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    back = q.decode_normals(q.encode_normals(axes), len(axes))
    assert _angle_deg(back, axes).max() < 0.1
