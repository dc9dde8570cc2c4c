"""Values passed between the extraction steps. Arrays in, arrays out; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoadedGeometry:
    """What a loader hands to the rest of extraction.

    vertices : (n, 3) float64, in the file's own units and axes
    faces : (m, 3) int64 triangle indices, or None for a point cloud
    point_normals : (n, 3) float64 normals a point-cloud file carried, or None
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    format: str  # upper-case short name: "STEP", "STL", "OBJ", "PCD", ...
    point_normals: np.ndarray | None = None
    up_axis: str | None = None  # "y" or "z" when the format says so, else None
    units: str | None = None
    mesh_count: int = 1  # meshes / solids / scene nodes merged into this geometry
    solid_count: int = 0  # CAD only
    warnings: list[str] = field(default_factory=list)
    tessellation: dict[str, Any] = field(default_factory=dict)  # CAD: deflections used
    metadata: dict[str, Any] = field(default_factory=dict)  # format facts (encoding, schema, ...)

    @property
    def is_point_cloud(self) -> bool:
        return self.faces is None


@dataclass(frozen=True)
class TessellationOptions:
    preset: str = "standard"  # preview | standard | high | custom
    linear_deflection: float = 0.001
    angular_deflection: float = 0.5
    relative: bool = True
    relative_linear: float = 0.001

    @classmethod
    def from_preset(cls, name: str, relative: bool = True) -> TessellationOptions:
        presets = {"preview": (0.01, 0.8), "standard": (0.001, 0.5), "high": (0.0001, 0.2)}
        if name not in presets:
            raise ValueError(f"unknown tessellation preset {name!r}; choose one of {sorted(presets)}")
        linear, angular = presets[name]
        return cls(name, linear, angular, relative, linear)


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides a snapshot's arrays. Same file + same options = same arrays."""

    points: int = 2048
    strategy: str = "hybrid"  # uniform | fps | poisson | voxel | hybrid
    oversample_ratio: float = 5.0
    seed: int = 0
    views: bool = False
    view_count: int = 12
    view_resolution: int = 224
    normal_k: int = 30
    orient_normals: bool = True
    max_faces: int = 2_000_000
    precision: str = "compact"
    tessellation: TessellationOptions = field(default_factory=TessellationOptions)

    @classmethod
    def from_settings(cls, extraction: Any, **overrides: Any) -> ExtractOptions:
        """Build from ``Settings.extraction``; keyword overrides win (None means keep)."""
        t = extraction.tessellation
        tess = (
            TessellationOptions(t.preset, t.linear_deflection, t.angular_deflection, t.relative, t.relative_linear)
            if t.preset == "custom"
            else TessellationOptions.from_preset(t.preset, t.relative)
        )
        base = cls(
            points=extraction.target_points,
            strategy=extraction.sampling_strategy,
            oversample_ratio=extraction.oversample_ratio,
            seed=extraction.seed,
            views=extraction.compute_views,
            view_count=extraction.view_count,
            view_resolution=extraction.view_resolution,
            normal_k=extraction.normal_k,
            orient_normals=extraction.orient_normals,
            max_faces=extraction.max_faces,
            precision=extraction.precision,
            tessellation=tess,
        )
        from dataclasses import replace

        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
